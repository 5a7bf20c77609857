/**
 * A graceful shutdown (as on SIGTERM, a rolling restart) with watchers open: StreamStatus and
 * WaitTask answer UNAVAILABLE saying the server is shutting down, so that clients resume, and the
 * SDK's handle.events() follows the task across a restart of the server on the same port and
 * database; a stream that ends normally before the task finished is a break the SDK resumes from.
 */
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient as createConnectClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import t from "tap";
import { defaultConfig } from "../../src/config.js";
import { DEFAULT_SERVER_LIMITS } from "../../src/core/limits.js";
import { TaskService, type StreamStatusResponse } from "../../src/gen/taskwire/v1/task_pb.js";
import { startServer } from "../../src/main.js";
import { createClient, TaskState } from "../../src/sdk/index.js";
import { taskHandle } from "../../src/sdk/task-handle.js";
import { testLogger } from "../helpers/logger.js";
import { jsonAny } from "../helpers/payload.js";
import { clientsFor, startTestServer, type TestServer } from "../helpers/server.js";

const SHUTDOWN_MESSAGE = /server is shutting down/;

/** A pending task (no worker takes it) of a freshly registered job type. */
async function pendingTask(s: TestServer, jobType: string): Promise<string> {
  await s.jobTypes.registerJobType({ name: jobType });
  return (await s.tasks.submit({ task: { jobType, input: jsonAny(1) } })).task!.id;
}

/** Resolves once the hub has `n` watchers in the namespace (the calls are inside their handlers). */
async function watchers(s: TestServer, n: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  const hub = s.server.engine.events as unknown as { feeds: Map<string, { watchers: Set<unknown> }> };
  while ((hub.feeds.get("default")?.watchers.size ?? 0) < n) {
    if (Date.now() > deadline) throw new Error(`fewer than ${n} watchers after 10 s`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Reads a stream to its end: the messages, and the error it ended with (undefined for a normal
 * end). `messages` fills as they arrive.
 */
async function drain(stream: AsyncIterable<StreamStatusResponse>, messages: StreamStatusResponse[] = []): Promise<{ messages: StreamStatusResponse[]; error: ConnectError | undefined }> {
  try {
    for await (const message of stream) messages.push(message);
    return { messages, error: undefined };
  } catch (error) {
    return { messages, error: ConnectError.from(error) };
  }
}

t.test("StreamStatus open on a pending task: a graceful shutdown ends it UNAVAILABLE, saying to resume from the cursor", async (t) => {
  const s = await startTestServer(t, { streamKeepaliveMs: 60_000 });
  const id = await pendingTask(s, "shutdown.stream");
  const json = clientsFor(s.url, undefined, "json");
  const received: [StreamStatusResponse[], StreamStatusResponse[]] = [[], []];
  const grpc = drain(s.tasks.streamStatus({ taskIds: [id] }), received[0]);
  const curl = drain(json.tasks.streamStatus({ taskIds: [id], since: 0n }), received[1]);
  await watchers(s, 2);
  // Both have had the task's snapshot (or event): what comes before the shutdown is delivered.
  for (let i = 0; i < 500 && received.some((m) => m.length === 0); i++) await new Promise((r) => setTimeout(r, 10));
  await s.server.stop();
  for (const [name, ended] of [["gRPC", await grpc], ["Connect JSON (HTTP/1.1)", await curl]] as const) {
    t.ok(ended.messages.length > 0, `${name}: the stream delivered the task before the shutdown`);
    t.equal(ended.error?.code, Code.Unavailable, `${name}: UNAVAILABLE, not a normal end of stream`);
    t.match(ended.error?.rawMessage, SHUTDOWN_MESSAGE, `${name}: says the server is shutting down`);
    t.match(ended.error?.rawMessage, /reconnect .*since = the last cursor received/, `${name}: says how to go on`);
  }
});

t.test("WaitTask and Submit's wait in progress: a graceful shutdown answers UNAVAILABLE, not DEADLINE_EXCEEDED", async (t) => {
  const s = await startTestServer(t);
  const id = await pendingTask(s, "shutdown.wait");
  const outcome = (call: Promise<unknown>) =>
    call.then(
      (response) => ({ response, error: undefined }),
      (error: unknown) => ({ response: undefined, error: ConnectError.from(error) }),
    );
  const wait = outcome(s.tasks.waitTask({ id, timeout: durationFromMs(60_000) }));
  const submit = outcome(s.tasks.submit({ task: { jobType: "shutdown.wait", input: jsonAny(2) }, waitTimeout: durationFromMs(60_000) }));
  await watchers(s, 2);
  const stopping = Date.now();
  await s.server.stop();
  const waited = await wait;
  t.equal(waited.error?.code, Code.Unavailable, "WaitTask: UNAVAILABLE");
  t.match(waited.error?.rawMessage, SHUTDOWN_MESSAGE, "WaitTask: says the server is shutting down");
  t.match(waited.error?.rawMessage, new RegExp(`task ${id} is still PENDING: retry the wait`), "WaitTask: says to retry the wait");
  const submitted = await submit;
  t.equal(submitted.error?.code, Code.Unavailable, "Submit with wait_timeout: UNAVAILABLE, not an answer with wait_timed_out");
  t.match(submitted.error?.rawMessage, SHUTDOWN_MESSAGE, "Submit: says the server is shutting down");
  t.match(submitted.error?.rawMessage, /wait for it with WaitTask/, "Submit: says the task exists and how to wait for it");
  t.ok(Date.now() - stopping < 10_000, "answered at the shutdown, not after the 60 s wait");
});

t.test("handle.events() follows a pending task across a restart of the server on the same port and database", async (t) => {
  const a = await startTestServer(t);
  const id = await pendingTask(a, "shutdown.restart");
  const client = createClient({ baseUrl: a.url });
  t.teardown(() => client.close());
  const seen: TaskState[] = [];
  const abort = new AbortController();
  t.teardown(() => abort.abort());
  const iteration = (async () => {
    for await (const event of client.handle(id).events({ signal: abort.signal })) seen.push(event.state);
  })();
  // Until the created event has arrived (the stream is open).
  const deadline = Date.now() + 10_000;
  while (seen.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  t.same(seen, [TaskState.PENDING], "the task's first event, before the restart");

  // And a wait in progress (an SDK wait goes on across the restart, within its own timeout).
  const waiting = client.handle(id).wait({ timeoutMs: 30_000 }).then((task) => TaskState[task.state], (error: unknown) => `rejected: ${String(error)}`);
  await watchers(a, 2);
  await a.server.stop();
  const b = await startServer(
    {
      ...defaultConfig({}),
      port: a.server.port,
      databaseUrl: a.databaseUrl,
      logLevel: "silent",
      inlineMaxThreads: 0,
      limits: { ...DEFAULT_SERVER_LIMITS },
    },
    testLogger(),
  );
  t.teardown(() => b.stop());
  let ended = false;
  void iteration.finally(() => (ended = true));
  // events() must still be iterating: the shutdown was a break, not the end of the task's events.
  await new Promise((r) => setTimeout(r, 500));
  t.notOk(ended, "events() did not end at the shutdown");
  const restarted = clientsFor(b.url, undefined);
  await restarted.tasks.cancel({ id, reason: "after the restart" });
  const finished = await Promise.race([iteration.then(() => "ended"), new Promise((r) => setTimeout(() => r("still iterating after 10 s"), 10_000))]);
  t.equal(finished, "ended", "events() ended with the task");
  t.same(seen, [TaskState.PENDING, TaskState.CANCELLED], "and saw it finish after the restart");
  t.equal(await waiting, "CANCELLED", "handle.wait() waited on across the restart and saw it finish");
});

t.test("handle.events(): a stream that ends normally before the task finished is resumed from the last cursor", async (t) => {
  const s = await startTestServer(t, { streamKeepaliveMs: 60_000 });
  const id = await pendingTask(s, "shutdown.cut");
  // The first StreamStatus ends, without error, after its first message (as a server that closes
  // its streams on shutdown without saying so).
  const requests: bigint[] = [];
  const cutFirst: Interceptor = (next) => async (req) => {
    if (!req.stream || req.method.name !== "StreamStatus") return next(req);
    const sent = req.message;
    async function* noted() {
      for await (const message of sent) {
        requests.push((message as { since?: bigint }).since ?? -1n);
        yield message;
      }
    }
    const res = await next({ ...req, message: noted() });
    if (!res.stream || requests.length > 1) return res;
    const received = res.message;
    async function* firstOnly() {
      const iterator = received[Symbol.asyncIterator]();
      const first = await iterator.next();
      if (first.done !== true) yield first.value;
      await iterator.return?.();
    }
    return { ...res, message: firstOnly() };
  };
  const transport = createConnectTransport({ baseUrl: s.url, httpVersion: "1.1", interceptors: [cutFirst] });
  const abort = new AbortController();
  t.teardown(() => abort.abort());
  const seen: TaskState[] = [];
  const iteration = (async () => {
    for await (const event of taskHandle(createConnectClient(TaskService, transport), id).events({ signal: abort.signal })) seen.push(event.state);
  })();
  const deadline = Date.now() + 10_000;
  while (requests.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  t.equal(requests.length, 2, "events() opened the stream again after its normal end");
  t.equal(requests[0], 0n, "the first stream from the task's creation");
  t.ok(requests[1]! > 0n, "the second one from the cursor of the event received");
  await s.tasks.cancel({ id, reason: "done" });
  const finished = await Promise.race([iteration.then(() => "ended"), new Promise((r) => setTimeout(() => r("still iterating after 10 s"), 10_000))]);
  t.equal(finished, "ended", "events() ended with the task");
  t.same(seen, [TaskState.PENDING, TaskState.CANCELLED], "each event once, up to the finished one");
});
