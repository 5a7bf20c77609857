/** StreamStatus, WaitTask and Submit's wait: snapshots, live events, resume without gaps, slow watchers. */
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-node";
import t from "tap";
import { TaskEventKind, TaskService, TaskState, type StreamStatusResponse } from "../../src/gen/taskwire/v1/task_pb.js";
import { openClaimStream } from "../helpers/claim-stream.js";
import { jsonAny } from "../helpers/payload.js";
import { startTestServer } from "../helpers/server.js";
import { testLogger } from "../helpers/logger.js";
import { EventHub } from "../../src/events/event-hub.js";
import { followEvents } from "../../src/events/status-stream.js";

const s = await startTestServer(t, { progressFlushMs: 100, streamKeepaliveMs: 300, eventBufferBytes: 64 * 1024 });
const db = s.server.engine.database.db;

/** Reads a server stream in the background; `take(n)` resolves with the first n messages. */
function watch(request: Parameters<typeof s.tasks.streamStatus>[0], client = s.tasks) {
  const abort = new AbortController();
  const received: StreamStatusResponse[] = [];
  const waiters: (() => void)[] = [];
  const done = (async () => {
    try {
      for await (const message of client.streamStatus(request, { signal: abort.signal })) {
        received.push(message);
        for (const w of waiters.splice(0)) w();
      }
    } catch (error) {
      if (!abort.signal.aborted) throw error;
    }
  })();
  return {
    received,
    events: () => received.filter((m) => m.message.case === "event").map((m) => m.message.value as Extract<StreamStatusResponse["message"], { case: "event" }>["value"]),
    async until(check: () => boolean, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (!check()) {
        if (Date.now() > deadline) throw new Error(`stream condition not met in ${timeoutMs} ms (${received.length} messages)`);
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 50);
        });
      }
    },
    async stop() {
      abort.abort();
      await done;
    },
  };
}

const completeOne = async (jobType: string) => {
  const [a] = (await s.workers.claimTasks({ workerId: "w-events", jobTypes: [jobType], maxTasks: 1 })).assignments;
  await s.workers.completeTask({ completion: { taskId: a!.taskId, attempt: a!.attempt, leaseToken: a!.leaseToken } });
  return a!;
};

t.test("a snapshot of the selected tasks, then live events in sequence order", async (t) => {
  await s.jobTypes.registerJobType({ name: "ev.snap" });
  const tasks = (await s.tasks.submitBatch({ tasks: [1, 2, 3].map((i) => ({ jobType: "ev.snap", input: jsonAny(i) })) })).tasks;
  const w = watch({ jobTypes: ["ev.snap"] });
  await w.until(() => w.received.filter((m) => m.message.case === "snapshot").length === 3);
  const snapshots = w.received.filter((m) => m.message.case === "snapshot");
  t.same(snapshots.map((m) => (m.message.value as { id: string }).id), tasks.map((x) => x.id));
  t.equal(new Set(snapshots.map((m) => m.cursor)).size, 1, "all snapshot items are current at one cursor");
  const a = await completeOne("ev.snap");
  await w.until(() => w.events().some((e) => e.taskId === a.taskId && e.state === TaskState.SUCCEEDED));
  const mine = w.events().filter((e) => e.taskId === a.taskId);
  t.same(
    mine.map((e) => [e.kind, e.previousState, e.state, e.attempt]),
    [
      [TaskEventKind.STATE_CHANGED, TaskState.PENDING, TaskState.RUNNING, 1],
      [TaskEventKind.STATE_CHANGED, TaskState.RUNNING, TaskState.SUCCEEDED, 1],
    ],
  );
  t.equal(mine[0]!.workerId, "w-events");
  const seqs = w.events().map((e) => e.sequence);
  t.ok(seqs.every((q, i) => i === 0 || q > seqs[i - 1]!), "sequence numbers increase");
  t.ok(seqs[0]! > snapshots[0]!.cursor, "live events come after the snapshot's cursor");
  await w.until(() => w.received.some((m) => m.message.case === "keepalive"), 2_000);
  t.pass("an idle stream gets keep-alives");
  await w.stop();
});

t.test("resume after a dropped stream replays exactly the missed sequence numbers", async (t) => {
  await s.jobTypes.registerJobType({ name: "ev.resume" });
  const start = (await db.query<{ seq: string }>("SELECT event_seq::text AS seq FROM namespace WHERE name = 'default'"))[0]!.seq;
  const first = watch({ since: BigInt(start) });
  await s.tasks.submitBatch({ tasks: Array.from({ length: 20 }, (_, i) => ({ jobType: "ev.resume", input: jsonAny(i) })) });
  await first.until(() => first.events().length >= 20);
  const cursor = first.received.at(-1)!.cursor;
  await first.stop();
  // While no one watches: 20 more tasks created, 3 completed.
  await s.tasks.submitBatch({ tasks: Array.from({ length: 20 }, (_, i) => ({ jobType: "ev.resume", input: jsonAny(i) })) });
  for (let i = 0; i < 3; i++) await completeOne("ev.resume");
  const missed = (await db.query<{ seq: string }>("SELECT e.seq::text AS seq FROM task_event e WHERE e.namespace = 'default' AND e.seq > $1 ORDER BY e.seq", [cursor.toString()])).map((r) => BigInt(r.seq));
  t.equal(missed.length, 26, "20 created + 3 x (running, succeeded)");
  const second = watch({ since: cursor });
  await second.until(() => second.events().length >= missed.length);
  t.same(second.events().map((e) => e.sequence), missed, "exactly the missed events, in order, no gap, no duplicate");
  const a = await completeOne("ev.resume");
  await second.until(() => second.events().some((e) => e.taskId === a.taskId && e.state === TaskState.SUCCEEDED));
  const all = second.events().map((e) => e.sequence);
  t.equal(new Set(all).size, all.length, "live events follow without duplicates");
  t.same(all, [...all].sort((x, y) => (x < y ? -1 : 1)));
  await second.stop();
});

t.test("WaitTask: success, and DEADLINE_EXCEEDED with the current state; Submit can wait too", async (t) => {
  await s.jobTypes.registerJobType({ name: "ev.wait" });
  const task = (await s.tasks.submit({ task: { jobType: "ev.wait", input: jsonAny(1) } })).task!;
  const timeout = await s.tasks.waitTask({ id: task.id, timeout: durationFromMs(200) }).then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
  t.equal(timeout?.code, Code.DeadlineExceeded);
  t.match(timeout?.message, new RegExp(`task ${task.id} is still PENDING after 200 ms`));
  const waiting = s.tasks.waitTask({ id: task.id, timeout: durationFromMs(10_000) });
  await new Promise((r) => setTimeout(r, 100));
  await completeOne("ev.wait");
  const { task: done } = await waiting;
  t.equal(done!.state, TaskState.SUCCEEDED);
  t.equal(done!.attempts.length, 1);
  const missingTimeout = await s.tasks.waitTask({ id: task.id }).then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
  t.equal(missingTimeout?.code, Code.InvalidArgument, "the timeout is explicit");
  const submitted = await s.tasks.submit({ task: { jobType: "ev.wait", input: jsonAny(2) }, waitTimeout: durationFromMs(150) });
  t.same([submitted.task?.state, submitted.waitTimedOut], [TaskState.PENDING, true], "a submit that waited in vain still created its task");
  const worker = openClaimStream(s.workers, { workerId: "w-wait", jobTypes: ["ev.wait"], credits: 1 });
  const [a2] = (await worker.next("assignments")).assignments;
  t.equal(a2!.taskId, submitted.task!.id);
  const waiting2 = s.tasks.submit({ task: { jobType: "ev.wait", input: jsonAny(3) }, waitTimeout: durationFromMs(10_000) });
  worker.send({ case: "complete", value: { $typeName: "taskwire.v1.TaskCompletion", taskId: a2!.taskId, attempt: 1, leaseToken: a2!.leaseToken, output: jsonAny("x") } });
  await worker.next("reportResult");
  const [a3] = (await worker.next("assignments")).assignments;
  worker.send({ case: "complete", value: { $typeName: "taskwire.v1.TaskCompletion", taskId: a3!.taskId, attempt: 1, leaseToken: a3!.leaseToken, output: jsonAny("y") } });
  const waited = await waiting2;
  t.same([waited.task?.id, waited.task?.state, waited.waitTimedOut], [a3!.taskId, TaskState.SUCCEEDED, false], "Submit returned once the task finished");
  worker.send({ case: "drain", value: { $typeName: "taskwire.v1.WorkerDrain" } });
  await worker.close();
});

t.test("progress floods arrive coalesced, with the final value", async (t) => {
  await s.jobTypes.registerJobType({ name: "ev.progress" });
  const task = (await s.tasks.submit({ task: { jobType: "ev.progress", input: jsonAny(1) } })).task!;
  const w = watch({ taskIds: [task.id] });
  await w.until(() => w.received.length >= 1);
  const worker = openClaimStream(s.workers, { workerId: "w-progress", jobTypes: ["ev.progress"], credits: 1 });
  const [a] = (await worker.next("assignments")).assignments;
  const started = Date.now();
  for (let i = 1; i <= 10_000; i++) {
    worker.send({ case: "progress", value: { $typeName: "taskwire.v1.TaskProgress", taskId: task.id, attempt: 1, leaseToken: a!.leaseToken, fraction: i / 10_000, message: `${i}` } });
    if (i % 1_000 === 0) await new Promise((r) => setTimeout(r, 20));
  }
  await w.until(() => w.events().some((e) => e.kind === TaskEventKind.PROGRESS && e.progressMessage === "10000"));
  const elapsed = Date.now() - started;
  const progress = w.events().filter((e) => e.kind === TaskEventKind.PROGRESS);
  t.ok(progress.length <= Math.ceil(elapsed / 100) + 2, `${progress.length} progress events for 10,000 updates in ${elapsed} ms (at most one per 100 ms)`);
  t.same([progress.at(-1)!.progress, progress.at(-1)!.progressMessage], [1, "10000"], "the final value arrived");
  worker.send({ case: "drain", value: { $typeName: "taskwire.v1.WorkerDrain" } });
  await worker.close();
  await w.stop();
});

t.test("two replicas: a watcher on one sees tasks completed through the other", async (t) => {
  const other = await startTestServer(t, { databaseUrl: s.databaseUrl });
  await s.jobTypes.registerJobType({ name: "ev.replica" });
  const task = (await s.tasks.submit({ task: { jobType: "ev.replica", input: jsonAny(1) } })).task!;
  const w = watch({ taskIds: [task.id] });
  await w.until(() => w.received.length >= 1);
  const [a] = (await other.workers.claimTasks({ workerId: "w-other", jobTypes: ["ev.replica"], maxTasks: 1 })).assignments;
  await other.workers.completeTask({ completion: { taskId: a!.taskId, attempt: 1, leaseToken: a!.leaseToken } });
  await w.until(() => w.events().some((e) => e.state === TaskState.SUCCEEDED));
  t.same(w.events().map((e) => e.state), [TaskState.RUNNING, TaskState.SUCCEEDED]);
  await w.stop();
});

t.test("Connect streaming over HTTP/1.1 with fetch (what curl does)", async (t) => {
  const body = JSON.stringify({ jobTypes: ["ev.http1"] });
  const frame = Buffer.alloc(5 + Buffer.byteLength(body));
  frame.writeUInt32BE(Buffer.byteLength(body), 1);
  frame.write(body, 5);
  await s.jobTypes.registerJobType({ name: "ev.http1" });
  const abort = new AbortController();
  const res = await fetch(`${s.url}/taskwire.v1.TaskService/StreamStatus`, {
    method: "POST",
    headers: { "content-type": "application/connect+json" },
    body: frame,
    signal: abort.signal,
  });
  t.equal(res.status, 200);
  const reader = res.body!.getReader();
  let buffer = Buffer.alloc(0);
  const messages: { event?: { state: string }; keepalive?: object }[] = [];
  const readUntil = async (check: () => boolean) => {
    while (!check()) {
      const { value, done } = await reader.read();
      if (done) throw new Error("stream ended");
      buffer = Buffer.concat([buffer, Buffer.from(value)]);
      while (buffer.length >= 5 && buffer.length >= 5 + buffer.readUInt32BE(1)) {
        const length = buffer.readUInt32BE(1);
        messages.push(JSON.parse(buffer.subarray(5, 5 + length).toString()));
        buffer = buffer.subarray(5 + length);
      }
    }
  };
  await readUntil(() => messages.some((m) => m.keepalive !== undefined));
  await s.tasks.submit({ task: { jobType: "ev.http1", input: jsonAny(1) } });
  await readUntil(() => messages.some((m) => m.event?.state === "TASK_STATE_PENDING"));
  t.pass("an HTTP/1.1 client received a live event as JSON");
  abort.abort();
});

t.test("gRPC-Web over HTTP/1.1 (what browsers speak) streams the same events", async (t) => {
  await s.jobTypes.registerJobType({ name: "ev.grpcweb" });
  const web = createClient(TaskService, createGrpcWebTransport({ baseUrl: s.url, httpVersion: "1.1" }));
  const w = watch({ jobTypes: ["ev.grpcweb"] }, web);
  await w.until(() => w.received.some((m) => m.message.case === "keepalive"));
  const task = (await s.tasks.submit({ task: { jobType: "ev.grpcweb", input: jsonAny(1) } })).task!;
  await completeOne("ev.grpcweb");
  await w.until(() => w.events().some((e) => e.state === TaskState.SUCCEEDED));
  t.same(
    w.events().map((e) => [e.taskId, e.state]),
    [
      [task.id, TaskState.PENDING],
      [task.id, TaskState.RUNNING],
      [task.id, TaskState.SUCCEEDED],
    ],
  );
  await w.stop();
});

t.test("a watcher gets events no notification announced (the hub's periodic check)", async (t) => {
  // A hub with no LISTEN connection at all: only its safety net can find new events.
  const deaf = new EventHub(db, testLogger(), 1024 * 1024);
  t.teardown(() => deaf.stop());
  await s.jobTypes.registerJobType({ name: "ev.deaf" });
  const position = BigInt((await db.query<{ seq: string }>("SELECT event_seq::text AS seq FROM namespace WHERE name = 'default'"))[0]!.seq);
  const watcher = deaf.subscribe("default", { taskIds: [], jobTypes: ["ev.deaf"], states: [] }, position);
  const abort = new AbortController();
  t.teardown(() => abort.abort());
  const items = followEvents(db, deaf, watcher, { keepaliveMs: 60_000, signal: abort.signal });
  const task = (await s.tasks.submit({ task: { jobType: "ev.deaf", input: jsonAny(1) } })).task!;
  const first = await items.next();
  t.match(first.value, { kind: "event", event: { taskId: task.id, state: "pending" } });
  abort.abort();
  await items.return(undefined);
});

t.test("a notification announcing nothing new does not stop the hub from reading later ones", async (t) => {
  // Once, a no-op notice (the periodic check finds nothing new) left the hub's read loop marked as
  // running forever, so no event reached any watcher again.
  const deaf = new EventHub(db, testLogger(), 1024 * 1024);
  t.teardown(() => deaf.stop());
  await s.jobTypes.registerJobType({ name: "ev.noop" });
  const seqNow = async () => (await db.query<{ seq: string }>("SELECT event_seq::text AS seq FROM namespace WHERE name = 'default'"))[0]!.seq;
  const position = BigInt(await seqNow());
  const watcher = deaf.subscribe("default", { taskIds: [], jobTypes: ["ev.noop"], states: [] }, position);
  const abort = new AbortController();
  t.teardown(() => abort.abort());
  const items = followEvents(db, deaf, watcher, { keepaliveMs: 60_000, signal: abort.signal });
  const first = items.next();
  await deaf.started("default");
  deaf.onNotice({ ns: "default", seq: await seqNow() }); // nothing new
  const task = (await s.tasks.submit({ task: { jobType: "ev.noop", input: jsonAny(1) } })).task!;
  deaf.onNotice({ ns: "default", seq: await seqNow() });
  // Well before the 5 s periodic check could deliver it.
  const got = await Promise.race([first, new Promise((r) => setTimeout(() => r("too late"), 3_000))]);
  t.match(got, { value: { kind: "event", event: { taskId: task.id } } });
  abort.abort();
  await items.return(undefined);
});
