/**
 * The round-trip floor under W2 on this machine: a unary gRPC call between two processes, paced
 * like W2 (one call every 5 ms) and back to back, (a) over bare `node:http2` with hand-written gRPC
 * framing and (b) through Connect on both sides (`connectNodeAdapter` serving grpc.health.v1
 * Health.Check, `createGrpcTransport` calling). No database, no Taskwire code on the path.
 *
 *   node --import tsx bench/rpc-floor.ts [--calls 1000]
 */
import { fork } from "node:child_process";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "../src/gen/grpc/health/v1/health_pb.js";
import { percentile } from "./stats.js";

const EMPTY_GRPC_MESSAGE = Buffer.from([0, 0, 0, 0, 0]);
const SERVING_GRPC_MESSAGE = Buffer.from([0, 0, 0, 0, 2, 8, 1]);

/** The server side, in a child process: both servers on ports of their own. */
function serve(): void {
  const raw = http2.createServer();
  raw.on("stream", (stream) => {
    stream.resume();
    stream.on("end", () => {
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(SERVING_GRPC_MESSAGE);
    });
  });
  const connect = http2.createServer(
    connectNodeAdapter({
      routes: (router) => router.service(Health, { check: async () => ({ status: HealthCheckResponse_ServingStatus.SERVING }), async *watch() {} }),
    }),
  );
  raw.listen(0, "127.0.0.1", () =>
    connect.listen(0, "127.0.0.1", () =>
      process.send!({ raw: (raw.address() as AddressInfo).port, connect: (connect.address() as AddressInfo).port }),
    ),
  );
}

/** Latency percentiles (ms) of `calls` calls, each `paceMs` after the previous answer, and client CPU per call (µs). */
async function measure(call: () => Promise<unknown>, calls: number, paceMs: number) {
  for (let i = 0; i < 100; i++) await call();
  const latencies: number[] = [];
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < calls; i++) {
    const t0 = process.hrtime.bigint();
    await call();
    latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (paceMs > 0) await new Promise((resolve) => setTimeout(resolve, paceMs));
  }
  const cpu = process.cpuUsage(cpu0);
  latencies.sort((a, b) => a - b);
  const ms = (q: number) => Number(percentile(latencies, q).toFixed(3));
  return { paceMs, p50Ms: ms(50), p95Ms: ms(95), p99Ms: ms(99), clientCpuUsPerCall: Math.round((cpu.user + cpu.system) / calls) };
}

if (process.argv[2] === "--serve") {
  serve();
} else {
  const callsAt = process.argv.indexOf("--calls");
  const calls = callsAt > 0 ? Number(process.argv[callsAt + 1]) : 1000;
  const child = fork(process.argv[1]!, ["--serve"], { execArgv: process.execArgv });
  const ports = await new Promise<{ raw: number; connect: number }>((resolve) => child.once("message", (m) => resolve(m as { raw: number; connect: number })));

  const session = http2.connect(`http://127.0.0.1:${ports.raw}`);
  const rawCall = () =>
    new Promise<void>((resolve, reject) => {
      const req = session.request({ ":method": "POST", ":path": "/grpc.health.v1.Health/Check", "content-type": "application/grpc", te: "trailers" });
      req.on("error", reject);
      req.resume();
      req.on("end", () => resolve());
      req.end(EMPTY_GRPC_MESSAGE);
    });
  const connectUrl = `http://127.0.0.1:${ports.connect}`;
  const sessionManager = new Http2SessionManager(connectUrl);
  const health = createClient(Health, createGrpcTransport({ baseUrl: connectUrl, sessionManager }));

  for (const paceMs of [5, 0]) {
    console.log(JSON.stringify({ path: "node:http2", ...(await measure(rawCall, calls, paceMs)) }));
    console.log(JSON.stringify({ path: "connect", ...(await measure(() => health.check({}), calls, paceMs)) }));
  }
  session.close();
  sessionManager.abort();
  child.kill();
}
