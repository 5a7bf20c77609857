import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import type tls from "node:tls";
import type { createNodeHandler } from "./node-handler.js";

type NodeHandlerFn = ReturnType<typeof createNodeHandler>;

/** The first bytes of every HTTP/2 connection (RFC 9113 section 3.4). */
const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** A listening server that speaks HTTP/1.1 and HTTP/2 on one port (cleartext, or TLS). */
export interface DualProtocolServer {
  /** The bound address (the real port when 0 was asked for). */
  readonly host: string;
  readonly port: number;
  /** True when it serves TLS (https). */
  readonly tls: boolean;
  /**
   * Stops accepting connections, asks HTTP/2 clients to go away and closes idle HTTP/1.1
   * connections; after `graceMs` any connection still open is destroyed.
   */
  close(graceMs?: number): Promise<void>;
}

/**
 * Serves `handler` over HTTP/1.1 and HTTP/2 (h2c) on one port. Cleartext HTTP/2 cannot be
 * negotiated, so each connection's first bytes decide: the HTTP/2 preface goes to an http2 server,
 * anything else to an http server. Both run the same Connect handler, so gRPC, gRPC-Web and
 * Connect (JSON or binary, curl-able) share the port.
 */
export async function listenDualProtocol(
  handler: NodeHandlerFn,
  options: { host: string; port: number },
): Promise<DualProtocolServer> {
  const h1 = http.createServer(handler);
  const h2 = http2.createServer({}, handler);
  const sockets = new Set<net.Socket>();
  // HTTP/1.1 sockets with a request in progress. http.Server tracks idle connections only when it
  // listens itself, so closeIdleConnections() cannot see the sockets handed to it here.
  const busy = new Set<net.Socket>();
  const http1Sockets = new Set<net.Socket>();
  let closing = false;
  h1.on("connection", (socket: net.Socket) => {
    http1Sockets.add(socket);
    socket.once("close", () => http1Sockets.delete(socket));
  });
  h1.on("request", (req, res) => {
    const socket = req.socket;
    busy.add(socket);
    if (closing) res.setHeader("connection", "close");
    res.once("close", () => {
      busy.delete(socket);
      if (closing) socket.destroySoon();
    });
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });

  const tcp = net.createServer({ noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.once("error", () => socket.destroy());
    // Wait for enough bytes to tell: "PRI" starts only the HTTP/2 preface (RFC 9113 reserves
    // the method), so three bytes, or any byte that differs from the preface, decide.
    let head = Buffer.alloc(0);
    const onReadable = () => {
      for (let chunk: Buffer | null; (chunk = socket.read()) !== null; ) head = Buffer.concat([head, chunk]);
      const n = Math.min(head.length, HTTP2_PREFACE.length);
      const matches = head.subarray(0, n).equals(HTTP2_PREFACE.subarray(0, n));
      if (matches && head.length < 3) return;
      socket.off("readable", onReadable);
      socket.unshift(head);
      (matches ? h2 : h1).emit("connection", socket);
    };
    socket.on("readable", onReadable);
  });

  await new Promise<void>((resolve, reject) => {
    tcp.once("error", reject);
    tcp.listen(options.port, options.host, () => {
      tcp.off("error", reject);
      resolve();
    });
  });
  const address = tcp.address() as net.AddressInfo;

  return {
    host: address.address,
    port: address.port,
    tls: false,
    async close(graceMs = 5_000) {
      closing = true;
      const closed = new Promise<void>((resolve) => tcp.close(() => resolve()));
      for (const session of sessions) session.close();
      // Idle HTTP/1.1 connections close now; busy ones once their response ends.
      for (const socket of http1Sockets) if (!busy.has(socket)) socket.destroySoon();
      const timer = setTimeout(() => {
        for (const socket of sockets) socket.destroy();
      }, graceMs);
      await closed;
      clearTimeout(timer);
    },
  };
}

/** The certificate and private key (PEM) a TLS server presents. */
export interface TlsFiles {
  cert: Buffer;
  key: Buffer;
}

/**
 * Serves `handler` over TLS: ALPN picks HTTP/2 ("h2", gRPC) or HTTP/1.1 (`allowHTTP1`) for each
 * connection, so gRPC, gRPC-Web and Connect share the port as in cleartext.
 */
export async function listenTls(handler: NodeHandlerFn, options: { host: string; port: number; tls: TlsFiles }): Promise<DualProtocolServer> {
  const server = http2.createSecureServer({ cert: options.tls.cert, key: options.tls.key, allowHTTP1: true, ALPNProtocols: ["h2", "http/1.1"] }, handler);
  const sockets = new Set<tls.TLSSocket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  const busy = new Set<net.Socket>();
  let closing = false;
  server.on("secureConnection", (socket: tls.TLSSocket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  // A failed handshake (wrong protocol, bad client) only ends that connection.
  server.on("tlsClientError", (_error, socket) => socket.destroy());
  server.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  server.on("request", (req: http2.Http2ServerRequest | http.IncomingMessage, res: http2.Http2ServerResponse | http.ServerResponse) => {
    if (req.httpVersionMajor !== 1) return;
    const socket = (req as http.IncomingMessage).socket;
    busy.add(socket);
    if (closing) res.setHeader("connection", "close");
    res.once("close", () => {
      busy.delete(socket);
      if (closing) socket.destroySoon();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address() as net.AddressInfo;
  return {
    host: address.address,
    port: address.port,
    tls: true,
    async close(graceMs = 5_000) {
      closing = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const session of sessions) session.close();
      for (const socket of sockets) if (!busy.has(socket) && socket.alpnProtocol !== "h2") socket.destroySoon();
      const timer = setTimeout(() => {
        for (const socket of sockets) socket.destroy();
      }, graceMs);
      await closed;
      clearTimeout(timer);
    },
  };
}
