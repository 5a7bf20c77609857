import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import type { connectNodeAdapter } from "@connectrpc/connect-node";

type NodeHandlerFn = ReturnType<typeof connectNodeAdapter>;

/** The first bytes of every HTTP/2 connection (RFC 9113 section 3.4). */
const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** A listening server that speaks HTTP/1.1 and cleartext HTTP/2 on one port. */
export interface DualProtocolServer {
  /** The bound address (the real port when 0 was asked for). */
  readonly host: string;
  readonly port: number;
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
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });

  const tcp = net.createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.once("error", () => socket.destroy());
    socket.once("readable", () => {
      const head: Buffer | null = socket.read();
      if (head === null) return; // closed before sending anything
      socket.unshift(head);
      const isHttp2 = HTTP2_PREFACE.subarray(0, Math.min(head.length, HTTP2_PREFACE.length)).equals(
        head.subarray(0, Math.min(head.length, HTTP2_PREFACE.length)),
      );
      (isHttp2 ? h2 : h1).emit("connection", socket);
    });
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
    async close(graceMs = 5_000) {
      const closed = new Promise<void>((resolve) => tcp.close(() => resolve()));
      for (const session of sessions) session.close();
      // HTTP/1.1 connections become idle as their last response ends; close them as they do.
      const sweep = setInterval(() => h1.closeIdleConnections(), 50);
      h1.closeIdleConnections();
      const timer = setTimeout(() => {
        for (const socket of sockets) socket.destroy();
      }, graceMs);
      await closed;
      clearInterval(sweep);
      clearTimeout(timer);
    },
  };
}
