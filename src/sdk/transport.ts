/**
 * Turns the SDK's connection options into a Connect transport. A transport the SDK creates owns its
 * HTTP/2 connection, so `close()` can shut that connection and leave no socket behind; a transport
 * the caller passes in stays the caller's to close.
 */
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";

/** Where the server is: a base URL (the SDK makes the transport), or a ready transport. */
export type ConnectionOptions =
  | {
      /** E.g. "http://127.0.0.1:8080". */
      baseUrl: string;
      /** Wire protocol over HTTP/2; default "grpc". */
      protocol?: "grpc" | "connect";
      /** The API key's token (tw_<id>_<secret>), sent as "Authorization: Bearer <token>" on every call. */
      apiKey?: string;
      /** For an https baseUrl whose certificate is not signed by a CA Node trusts: the PEM certificate(s) to trust. */
      ca?: string | Buffer;
      transport?: undefined;
    }
  | {
      /** Any Connect transport, e.g. createRouterTransport(routes) in tests; never closed by the SDK. */
      transport: Transport;
      baseUrl?: undefined;
      protocol?: undefined;
      apiKey?: undefined;
      ca?: undefined;
    };

/** A transport and the way to release what the SDK opened for it. */
export interface OwnedTransport {
  readonly transport: Transport;
  /** Closes the HTTP/2 connection if the SDK opened it (and any stream still on it). */
  close(): void;
}

/** Options for the HTTP/2 connection of a transport the SDK creates. */
export interface Http2Tuning {
  /**
   * PING interval while streams are open, so a connection that died silently (server host gone,
   * NAT dropped it) is noticed and a long-lived stream can reconnect. Unset: no pings.
   */
  pingIntervalMs?: number;
}

/** Resolves connection options to a transport. */
export function resolveTransport(options: ConnectionOptions, tuning: Http2Tuning = {}): OwnedTransport {
  if (options.transport !== undefined) return { transport: options.transport, close() {} };
  if (typeof options.baseUrl !== "string" || options.baseUrl === "") {
    throw new TypeError("taskwire: pass either baseUrl (e.g. \"http://127.0.0.1:8080\") or transport");
  }
  const sessionManager = new Http2SessionManager(
    options.baseUrl,
    tuning.pingIntervalMs === undefined ? {} : { pingIntervalMs: tuning.pingIntervalMs },
    options.ca === undefined ? undefined : { ca: options.ca },
  );
  const protocol = options.protocol ?? "grpc";
  if (protocol !== "grpc" && protocol !== "connect") throw new TypeError(`taskwire: protocol must be "grpc" or "connect", not ${JSON.stringify(protocol)}`);
  const interceptors = options.apiKey === undefined ? [] : [bearer(options.apiKey)];
  const transport =
    protocol === "grpc"
      ? createGrpcTransport({ baseUrl: options.baseUrl, sessionManager, interceptors })
      : // Connect needs HTTP/2 here: the worker's Claim stream is bidirectional.
        createConnectTransport({ baseUrl: options.baseUrl, httpVersion: "2", sessionManager, interceptors });
  return { transport, close: () => sessionManager.abort() };
}

/** Sends the API key on every call. */
function bearer(apiKey: string): Interceptor {
  if (typeof apiKey !== "string" || apiKey === "" || /\s/.test(apiKey)) throw new TypeError("taskwire: apiKey must be the token `taskwire keys create` printed (tw_<id>_<secret>)");
  const value = `Bearer ${apiKey}`;
  return (next) => (req) => {
    req.header.set("authorization", value);
    return next(req);
  };
}
