/**
 * The Node.js request handler: connectNodeAdapter's routing (same options), plus corrections of
 * errors Connect raises while a request is decoded, before any interceptor can map them.
 *
 * Connect (2.2 and 2.3) answers a few malformed request bodies with INTERNAL: one that is not
 * valid protobuf binary ("parse binary: ..."; malformed JSON gets INVALID_ARGUMENT), a compressed
 * envelope without an encoding, and a compressed body zlib cannot read (other than Z_DATA_ERROR).
 * Each is the client's mistake, so for each protocol those errors become INVALID_ARGUMENT (HTTP 400).
 * A request message over readMaxBytes keeps RESOURCE_EXHAUSTED, but its message names the
 * operator's flag (--max-message-bytes) instead of Connect's option. Everything else passes untouched.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { Code, ConnectError, createConnectRouter, type ConnectRouter } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip, universalRequestFromNodeRequest, universalResponseToNodeResponse, type ConnectNodeAdapterOptions } from "@connectrpc/connect-node";
import type { UniversalServerResponse } from "@connectrpc/connect/protocol";
import { codeFromString, codeToHttpStatus, codeToString } from "@connectrpc/connect/protocol-connect";
import { LIMIT_SPECS } from "../core/limits.js";
import { inRequestScope } from "./request-namespace.js";

type NodeRequest = IncomingMessage | Http2ServerRequest;
type NodeResponse = ServerResponse | Http2ServerResponse;

/** The INTERNAL messages Connect gives malformed request bodies, and what the client is told instead. */
const CLIENT_MISTAKES: readonly [prefix: string, instead: string][] = [
  ["parse binary: ", "the request body is not a valid protobuf message of this RPC's request type: "],
  ["received compressed envelope, but do not know how to decompress", "a message is flagged compressed, but the request names no compression (grpc-encoding / connect-content-encoding)"],
  ["decompression failed", "the request body could not be decompressed"],
];

/**
 * Connect's messages for a request message over readMaxBytes: its size when known, and whether it
 * was the decompressed size (connect and connect-node 2.2).
 */
const TOO_LARGE = /^message (?:size (?:(\d+) )?)?is larger than configured readMaxBytes \d+( after decompression)?$/;

/** What a client gets instead of an error Connect raised. */
interface Correction {
  code: Code;
  message: string;
}

/** Corrects one error (code and message) for a server whose readMaxBytes is --max-message-bytes. */
type Corrector = (code: Code, message: string) => Correction | undefined;

/** The corrections, knowing the configured message limit (named in its errors). */
function createCorrector(maxMessageBytes: number | undefined): Corrector {
  return (code, message) => {
    if (code === Code.Internal) {
      for (const [prefix, instead] of CLIENT_MISTAKES) if (message.startsWith(prefix)) return { code: Code.InvalidArgument, message: instead + message.slice(prefix.length) };
      return undefined;
    }
    const tooLarge = code === Code.ResourceExhausted ? TOO_LARGE.exec(message) : null;
    if (tooLarge === null || maxMessageBytes === undefined) return undefined;
    const [, size, decompressed] = tooLarge;
    const what = `the request message${decompressed === undefined ? "" : ", decompressed,"}${size === undefined ? "" : ` (${size} bytes)`}`;
    return { code, message: `${what} is larger than this server accepts (${LIMIT_SPECS.maxMessageBytes.flag} ${maxMessageBytes} bytes); send a smaller message, or fewer tasks per call` };
  };
}

/** Creates the handler for http and http2 servers. */
export function createNodeHandler(options: ConnectNodeAdapterOptions & { routes: (router: ConnectRouter) => void }): (req: NodeRequest, res: NodeResponse) => void {
  options.acceptCompression ??= [compressionGzip, compressionBrotli];
  const router = createConnectRouter(options);
  options.routes(router);
  const paths = new Map(router.handlers.map((handler) => [handler.requestPath, handler]));
  const correct = createCorrector(options.readMaxBytes);
  return (req, res) => {
    // An HTTP/1.1 request answered before its body was read (e.g. a message over --max-message-bytes)
    // leaves the rest of the body on the connection; closing it keeps the next request from
    // stalling behind those bytes (seen with gRPC-Web).
    if (req.httpVersionMajor === 1) {
      const socket = (req as IncomingMessage).socket;
      res.once("finish", () => {
        if (!req.complete) socket.destroySoon();
      });
    }
    const handler = paths.get(req.url?.split("?", 2)[0] ?? "");
    if (handler === undefined) {
      options.fallback?.(req, res);
      return;
    }
    // One scope for the whole exchange, the response's encoding included (request-namespace.ts).
    void inRequestScope(() =>
      handler(universalRequestFromNodeRequest(req, res, undefined, options.contextValues?.(req)))
        .then((response) => universalResponseToNodeResponse(correctErrors(response, correct), res))
        .catch((reason: unknown) => {
          if (ConnectError.from(reason).code === Code.Aborted) return;
          // As connectNodeAdapter does: the response could not be written (the client went away).
          console.error(`handler for rpc ${handler.method.name} of ${handler.service.typeName} failed`, reason);
        }),
    );
  };
}

/** The response with Connect's decoding errors corrected (see the top of this file), in whichever protocol it is written. */
function correctErrors(response: UniversalServerResponse, correct: Corrector): UniversalServerResponse {
  const body = response.body;
  if (body === undefined) return response;
  const type = response.header?.get("content-type") ?? "";
  if (type.startsWith("application/grpc-web")) return { ...response, body: mapChunks(body, (chunk) => rewriteGrpcWebTrailers(chunk, correct)) };
  if (type.startsWith("application/grpc")) {
    // The status is in the trailers, filled in once the body has ended (and written after it).
    return { ...response, body: afterEnd(body, () => rewriteGrpcTrailers(response.trailer, correct)) };
  }
  if (type.startsWith("application/connect+")) return { ...response, body: mapChunks(body, (chunk) => rewriteEndStream(chunk, correct)) };
  if (response.status >= 400 && type.startsWith("application/json")) {
    // A unary Connect error: one JSON body; the adapter reads status and headers after the first chunk.
    const corrected: UniversalServerResponse = { ...response };
    corrected.body = mapChunks(body, (chunk) => {
      const fixed = correctedErrorJson(chunk, correct);
      if (fixed === undefined) return chunk;
      corrected.status = codeToHttpStatus(fixed.code);
      corrected.header?.set("content-length", String(fixed.json.byteLength));
      return fixed.json;
    });
    return corrected;
  }
  return response;
}

async function* mapChunks(body: AsyncIterable<Uint8Array>, map: (chunk: Uint8Array) => Uint8Array): AsyncIterable<Uint8Array> {
  for await (const chunk of body) yield map(chunk);
}

async function* afterEnd(body: AsyncIterable<Uint8Array>, done: () => void): AsyncIterable<Uint8Array> {
  yield* body;
  done();
}

/** A Connect error's JSON (`{"code":..., "message":...}`) corrected, or undefined for any other body. */
function correctedErrorJson(bytes: Uint8Array, correct: Corrector): { code: Code; json: Uint8Array } | undefined {
  const error = parseJson(bytes) as { code?: unknown; message?: unknown } | undefined;
  if (typeof error?.code !== "string" || typeof error.message !== "string") return undefined;
  const code = codeFromString(error.code);
  const fixed = code === undefined ? undefined : correct(code, error.message);
  if (fixed === undefined) return undefined;
  return { code: fixed.code, json: new TextEncoder().encode(JSON.stringify({ ...error, code: codeToString(fixed.code), message: fixed.message })) };
}

function parseJson(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return undefined;
  }
}

/** Calls `map` on each uncompressed envelope (flags, 4-byte length, data) of a chunk of whole envelopes. */
function mapEnvelopes(chunk: Uint8Array, map: (flags: number, data: Uint8Array) => Uint8Array | undefined): Uint8Array {
  const parts: Uint8Array[] = [];
  let changed = false;
  let at = 0;
  while (at + 5 <= chunk.byteLength) {
    const flags = chunk[at]!;
    const length = new DataView(chunk.buffer, chunk.byteOffset + at + 1, 4).getUint32(0);
    if (at + 5 + length > chunk.byteLength) break;
    const data = chunk.subarray(at + 5, at + 5 + length);
    const replaced = (flags & 1) === 0 ? map(flags, data) : undefined;
    if (replaced === undefined) {
      parts.push(chunk.subarray(at, at + 5 + length));
    } else {
      changed = true;
      const head = new Uint8Array(5);
      head[0] = flags;
      new DataView(head.buffer).setUint32(1, replaced.byteLength);
      parts.push(head, replaced);
    }
    at += 5 + length;
  }
  if (!changed) return chunk;
  parts.push(chunk.subarray(at));
  return Buffer.concat(parts);
}

/** Connect streaming: the end-of-stream envelope (flag 2) carries `{"error": {...}}`. */
function rewriteEndStream(chunk: Uint8Array, correct: Corrector): Uint8Array {
  return mapEnvelopes(chunk, (flags, data) => {
    if ((flags & 2) === 0) return undefined;
    const end = parseJson(data) as { error?: unknown } | undefined;
    if (end?.error === undefined) return undefined;
    const corrected = correctedErrorJson(new TextEncoder().encode(JSON.stringify(end.error)), correct);
    return corrected === undefined ? undefined : new TextEncoder().encode(JSON.stringify({ ...end, error: parseJson(corrected.json) }));
  });
}

/** gRPC: grpc-status and grpc-message trailers (the message percent-encoded). */
function rewriteGrpcTrailers(trailer: Headers | undefined, correct: Corrector): void {
  const status = Number(trailer?.get("grpc-status") ?? "0");
  if (trailer === undefined || !(status in Code) || status === 0) return;
  let fixed: Correction | undefined;
  try {
    fixed = correct(status as Code, decodeURIComponent(trailer.get("grpc-message") ?? ""));
  } catch {
    return;
  }
  if (fixed === undefined) return;
  trailer.set("grpc-status", String(fixed.code));
  trailer.set("grpc-message", encodeURIComponent(fixed.message));
}

/** gRPC-Web: the trailers are the body's last envelope (flag 0x80), as HTTP header lines. */
function rewriteGrpcWebTrailers(chunk: Uint8Array, correct: Corrector): Uint8Array {
  return mapEnvelopes(chunk, (flags, data) => {
    if ((flags & 0x80) === 0) return undefined;
    const trailer = new Headers();
    for (const line of new TextDecoder().decode(data).split("\r\n")) {
      const colon = line.indexOf(":");
      if (colon > 0) trailer.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
    }
    const before = `${trailer.get("grpc-status")} ${trailer.get("grpc-message")}`;
    rewriteGrpcTrailers(trailer, correct);
    if (`${trailer.get("grpc-status")} ${trailer.get("grpc-message")}` === before) return undefined;
    let text = "";
    trailer.forEach((value, name) => (text += `${name}: ${value}\r\n`));
    return new TextEncoder().encode(text);
  });
}
