/** The SDK's task handle: result({ timeoutMs }), wait(), and the async iterator of a task's events, with reconnects. */
import net from "node:net";
import { Code, ConnectError } from "@connectrpc/connect";
import t from "tap";
import { createClient, createWorker, defineJob, NonRetryableError, TaskEventKind, TaskFailedError, TaskState, type TaskEvent } from "../../src/sdk/index.js";
import { startTestServer } from "../helpers/server.js";

const s = await startTestServer(t, { progressFlushMs: 20, streamKeepaliveMs: 300 });
const client = createClient({ baseUrl: s.url });
t.teardown(() => client.close());
const hub = s.server.engine.events;

/** Releases the handler of the task whose input names it; the handler reports progress first. */
const gates = new Map<number, () => void>();
const gated = defineJob({
  name: "handle.gated",
  input: "json",
  output: "json",
  handler: async (input, ctx) => {
    const { n, fail } = input as { n: number; fail?: boolean };
    ctx.progress(0.5, `half of ${n}`);
    await new Promise<void>((resolve) => gates.set(n, resolve));
    if (fail) throw new NonRetryableError(`task ${n} was told to fail`);
    return { doubled: n * 2 };
  },
});
await client.registerJobType(gated);
const worker = createWorker({ baseUrl: s.url, jobs: [gated], concurrency: 4 });
await worker.start();
t.teardown(() => worker.stop());

async function until(check: () => boolean, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("condition not met");
    await new Promise((r) => setTimeout(r, 10));
  }
}
const release = async (n: number) => {
  await until(() => gates.has(n));
  gates.get(n)!();
};
const states = (events: TaskEvent[]) => events.map((e) => (e.kind === TaskEventKind.PROGRESS ? `progress ${e.progressMessage}` : TaskState[e.state]));

t.test("result() waits for the typed output; wait() times out with DEADLINE_EXCEEDED first", async (t) => {
  const task = await client.submit(gated, { n: 21 });
  const handle = client.handle(task, gated);
  const early = await handle.wait({ timeoutMs: 100 }).then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
  t.equal(early?.code, Code.DeadlineExceeded, "still running after 100 ms");
  const result = handle.result({ timeoutMs: 10_000 });
  await release(21);
  t.same(await result, { doubled: 42 });
  t.equal((await handle.get()).state, TaskState.SUCCEEDED);
  const raw = await client.handle(task.id).result({ timeoutMs: 1_000 });
  t.equal(raw?.typeUrl, "type.googleapis.com/google.protobuf.Value", "without the job, result() is the raw Any");
  await t.rejects(handle.wait({ timeoutMs: 0 }), RangeError, "a wait must be bounded and positive");
});

t.test("result() of a task that ended DEAD rejects with TaskFailedError carrying the task", async (t) => {
  const handle = client.handle(await client.submit(gated, { n: 5, fail: true }), gated);
  const result = handle.result({ timeoutMs: 10_000 }).then(
    () => undefined,
    (e: unknown) => e,
  );
  await release(5);
  const error = await result;
  t.type(error, TaskFailedError);
  t.equal((error as TaskFailedError).task.state, TaskState.DEAD);
  t.match((error as TaskFailedError).message, /ended DEAD: .*task 5 was told to fail/, String(error));
});

t.test("iterating a handle yields the task's events from its creation until it finishes", async (t) => {
  const task = await client.submit(gated, { n: 7 });
  const handle = client.handle(task, gated);
  const seen: TaskEvent[] = [];
  const iterating = (async () => {
    for await (const event of handle) seen.push(event);
  })();
  await until(() => seen.some((e) => e.kind === TaskEventKind.PROGRESS));
  t.same(states(seen), ["PENDING", "RUNNING", "progress half of 7"], "history first, then live");
  await release(7);
  await iterating;
  t.same(states(seen), ["PENDING", "RUNNING", "progress half of 7", "SUCCEEDED"], "ending at SUCCEEDED");

  const again: TaskEvent[] = [];
  for await (const event of handle) again.push(event);
  t.same(again, seen, "a finished task's iterator replays its history and ends");
  const after: TaskEvent[] = [];
  for await (const event of handle.events({ since: seen[1]!.sequence })) after.push(event);
  t.same(states(after), ["progress half of 7", "SUCCEEDED"], "since: only what came after");
  const none: TaskEvent[] = [];
  for await (const event of handle.events({ since: seen.at(-1)!.sequence })) none.push(event);
  t.same(none, [], "since the last event of a finished task: ends at the first keep-alive");
});

t.test("an end state undone by Retry does not end the iteration", async (t) => {
  const handle = client.handle(await client.submit(gated, { n: 11, fail: true }), gated);
  while ((await handle.get()).progressMessage !== "half of 11") await new Promise((r) => setTimeout(r, 10));
  await release(11);
  t.equal((await handle.wait({ timeoutMs: 10_000 })).state, TaskState.DEAD);
  gates.delete(11);
  await client.retry(handle.id, 1);
  const seen: TaskEvent[] = [];
  const iterating = (async () => {
    for await (const event of handle) seen.push(event);
  })();
  // Released once its progress is recorded (progress is coalesced, so an attempt that ended at once might not show it).
  await until(() => seen.filter((e) => e.kind === TaskEventKind.PROGRESS).length === 2);
  await release(11);
  await iterating;
  t.same(states(seen), ["PENDING", "RUNNING", "progress half of 11", "DEAD", "PENDING", "RUNNING", "progress half of 11", "DEAD"]);
});

t.test("events() resumes from its last event when the connection breaks", async (t) => {
  // A TCP proxy in front of the server, whose connections the test cuts.
  const sockets = new Set<net.Socket>();
  const proxy = net.createServer((inbound) => {
    const outbound = net.connect(Number(new URL(s.url).port), "127.0.0.1");
    for (const socket of [inbound, outbound]) {
      sockets.add(socket);
      socket.on("error", () => undefined);
      socket.on("close", () => sockets.delete(socket));
    }
    inbound.pipe(outbound).pipe(inbound);
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  t.teardown(() => proxy.close());
  const viaProxy = createClient({ baseUrl: `http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}` });
  t.teardown(() => viaProxy.close());

  const task = await client.submit(gated, { n: 9 });
  const seen: TaskEvent[] = [];
  const iterating = (async () => {
    for await (const event of viaProxy.handle(task.id)) seen.push(event);
  })();
  await until(() => seen.some((e) => e.kind === TaskEventKind.PROGRESS));
  for (const socket of sockets) socket.destroy();
  await release(9);
  await iterating;
  t.same(states(seen), ["PENDING", "RUNNING", "progress half of 9", "SUCCEEDED"], "no event lost or repeated across the reconnect");
  t.same(
    seen.map((e) => e.sequence),
    [...seen.map((e) => e.sequence)].sort((a, b) => (a < b ? -1 : 1)),
  );
});
