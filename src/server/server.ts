/** The RPC server: Connect handler (gRPC, gRPC-Web, Connect) plus /healthz, on one port. */
import { createContextValues } from "@connectrpc/connect";
import type { Logger } from "pino";
import type { ServerLimits } from "../core/limits.js";
import type { Engine } from "../engine/engine.js";
import { createAuthGate } from "./auth-gate.js";
import { createErrorInterceptor } from "./error-mapping.js";
import { createDatabaseProbe } from "./health.js";
import { createNodeHandler } from "./node-handler.js";
import { listenDualProtocol, listenTls, type DualProtocolServer, type TlsFiles } from "./http-server.js";
import { PayloadTypes } from "./payloads.js";
import { remoteAddressKey } from "./request-context.js";
import { createRoutes } from "./routes.js";
import { createStreamGuard, StreamRegistry } from "./stream-guard.js";
import { SubmitLimiter } from "./submit-limiter.js";

/** Responses smaller than this are sent uncompressed. */
const COMPRESS_MIN_BYTES = 64 * 1024;

/** A serving RPC server, with what tests and metrics look at. */
export interface RpcServer extends DualProtocolServer {
  readonly streams: StreamRegistry;
}

/** Serves the engine on host:port until `shutdown` is aborted or close() is called. */
export async function startRpcServer(
  engine: Engine,
  logger: Logger,
  options: { host: string; port: number; shutdownSignal: AbortSignal; streamKeepaliveMs: number; limits: ServerLimits; tls: TlsFiles | null },
): Promise<RpcServer> {
  const { limits } = options;
  const payloads = new PayloadTypes(limits.maxPayloadBytes);
  await payloads.follow(engine.database.db, 2_000, options.shutdownSignal, logger);
  const probe = createDatabaseProbe(engine.database.db);
  const streams = new StreamRegistry(engine.auth, logger, limits);
  const submitLimiter = new SubmitLimiter({ ratePerSec: limits.submitRatePerSec, burst: limits.submitBurst });
  options.shutdownSignal.addEventListener("abort", () => submitLimiter.stop(), { once: true });
  const handler = createNodeHandler({
    routes: createRoutes(engine, payloads, probe, logger, { streamKeepaliveMs: options.streamKeepaliveMs, limits, submitLimiter, shutdownSignal: options.shutdownSignal }),
    // Authentication and role checks run before a request body is read.
    requestGate: createAuthGate(engine.auth, logger),
    // Streams of callers without a key are counted per address (src/auth/principal.ts).
    contextValues: (req) => createContextValues().set(remoteAddressKey, req.socket.remoteAddress ?? ""),
    interceptors: [createErrorInterceptor(logger), createStreamGuard(streams)],
    shutdownSignal: options.shutdownSignal,
    // Connect refuses larger messages with RESOURCE_EXHAUSTED; node-handler.ts names --max-message-bytes in the message.
    readMaxBytes: limits.maxMessageBytes,
    // Gzip only large responses: below this, compressing costs the server more CPU than it saves
    // on the wire (measured: 5% of the server's CPU in W1 went to gzip of ~1 KiB messages).
    compressMinBytes: COMPRESS_MIN_BYTES,
    // Strict JSON: a misspelt field is refused (INVALID_ARGUMENT), not silently dropped, as
    // Connect's default would (also inside a typed payload's JSON).
    jsonOptions: { registry: payloads.jsonRegistry, ignoreUnknownFields: false },
    fallback(req, res) {
      if (req.method === "GET" && (req.url === "/healthz" || req.url === "/healthz/")) {
        void probe().then((ok) => {
          res.writeHead(ok ? 200 : 503, { "content-type": "application/json" });
          res.end(JSON.stringify({ status: ok ? "ok" : "database unavailable" }));
        });
        return;
      }
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found: Taskwire serves gRPC, gRPC-Web and Connect at /taskwire.v1.*, and GET /healthz\n");
    },
  });
  const server =
    options.tls === null
      ? await listenDualProtocol(handler, { host: options.host, port: options.port })
      : await listenTls(handler, { host: options.host, port: options.port, tls: options.tls });
  return Object.assign(server, { streams });
}
