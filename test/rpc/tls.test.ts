/**
 * TLS with a certificate generated for this test (openssl): gRPC over HTTP/2 (ALPN "h2") through
 * the SDK with an API key, Connect JSON over HTTP/1.1 (ALPN "http/1.1") on the same port, a worker
 * stream, and a cleartext client refused without harming the server.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import https from "node:https";
import http2 from "node:http2";
import { tmpdir } from "node:os";
import path from "node:path";
import tls from "node:tls";
import { promisify } from "node:util";
import t from "tap";
import { createClient, createWorker, defineJob } from "../../src/sdk/index.js";
import { createTestKey, startTestServer } from "../helpers/server.js";

const dir = await mkdtemp(path.join(tmpdir(), "taskwire-tls-"));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const certFile = path.join(dir, "cert.pem");
const keyFile = path.join(dir, "key.pem");
await promisify(execFile)("openssl", [
  "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
  "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
  "-keyout", keyFile, "-out", certFile,
]);
const ca = await readFile(certFile);

const s = await startTestServer(t, { tls: { certFile, keyFile } });
const { token } = await createTestKey(s.server.engine.database, "default", ["producer", "worker"]);

t.test("the server says https and negotiates h2 and http/1.1 by ALPN", async (t) => {
  t.match(s.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  for (const protocol of ["h2", "http/1.1"]) {
    const socket = tls.connect({ host: "127.0.0.1", port: s.server.port, ca, servername: "localhost", ALPNProtocols: [protocol] });
    await new Promise<void>((resolve, reject) => socket.once("secureConnect", resolve).once("error", reject));
    t.equal(socket.alpnProtocol, protocol, `ALPN ${protocol}`);
    socket.destroy();
  }
});

t.test("round trip over TLS: SDK client and worker (gRPC, HTTP/2) with an API key", async (t) => {
  const job = defineJob({ name: "tls.echo", input: "json", output: "json", handler: async (input) => ({ echoed: input }) });
  const client = createClient({ baseUrl: s.url, apiKey: token, ca });
  t.teardown(() => client.close());
  await client.registerJobType(job);
  const worker = createWorker({ baseUrl: s.url, apiKey: token, ca, jobs: [job], concurrency: 2, logger: { info() {}, warn() {}, error() {} } });
  await worker.start();
  t.teardown(() => worker.stop({ graceMs: 0 }));
  const task = await client.submit(job, { hello: "tls" });
  t.same(await client.handle(task, job).result({ timeoutMs: 10_000 }), { echoed: { hello: "tls" } });
});

t.test("Connect JSON over HTTP/1.1 on the same TLS port", async (t) => {
  const body = await new Promise<{ status: number; alpn: string; json: Record<string, unknown> }>((resolve, reject) => {
    const req = https.request(
      { host: "127.0.0.1", port: s.server.port, ca, servername: "localhost", ALPNProtocols: ["http/1.1"], method: "POST", path: "/taskwire.v1.TaskService/ListTasks", headers: { "content-type": "application/json", authorization: `Bearer ${token}` } } as https.RequestOptions,
      (res) => {
        let text = "";
        const alpn = (res.socket as tls.TLSSocket).alpnProtocol as string;
        res.on("data", (chunk: Buffer) => (text += chunk.toString()));
        res.on("end", () => resolve({ status: res.statusCode!, alpn, json: JSON.parse(text) as Record<string, unknown> }));
      },
    );
    req.once("error", reject);
    req.end("{}");
  });
  t.equal(body.status, 200);
  t.equal(body.alpn, "http/1.1");
  t.match(body.json, { totalCount: "1" });
});

t.test("a cleartext HTTP/2 client is refused; the server keeps serving", async (t) => {
  const session = http2.connect(s.url.replace("https:", "http:"));
  const failed = await new Promise<boolean>((resolve) => {
    session.once("error", () => resolve(true));
    session.once("close", () => resolve(true));
    session.once("connect", () => {
      const req = session.request({ ":path": "/healthz" });
      req.once("error", () => resolve(true));
      req.once("response", () => resolve(false));
      req.end();
    });
  });
  session.destroy();
  t.ok(failed, "no answer in cleartext");
  const health = await new Promise<number>((resolve, reject) => https.get({ host: "127.0.0.1", port: s.server.port, ca, servername: "localhost", path: "/healthz" }, (res) => resolve(res.statusCode!)).once("error", reject));
  t.equal(health, 200);
});
