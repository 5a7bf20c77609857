/** The TypeScript SDK against the real server: typed jobs, cancel, exactly-once under load, reconnect. */
import { StringValueSchema, Int64ValueSchema } from "@bufbuild/protobuf/wkt";
import t, { type Test } from "tap";
import { defaultConfig } from "../../src/config.js";
import { AttemptOutcome } from "../../src/gen/taskwire/v1/task_pb.js";
import { startServer } from "../../src/main.js";
import { createClient, createWorker, defineJob, TaskState, taskOutput, type Worker } from "../../src/sdk/index.js";
import { startTestServer } from "../helpers/server.js";
import { testLogger } from "../helpers/logger.js";

const s = await startTestServer(t, { safetyPollMs: 500 });
const client = createClient({ baseUrl: s.url });
t.teardown(() => client.close());

/** Resolves when the task reaches a finished state (polling GetTask; the status stream is a later issue). */
async function finished(id: string, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const task = await client.getTask(id);
    if (task.state === TaskState.SUCCEEDED || task.state === TaskState.DEAD || task.state === TaskState.CANCELLED) return task;
    if (Date.now() > deadline) throw new Error(`task ${id} still ${TaskState[task.state]} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function startWorker(t: Test, options: Parameters<typeof createWorker>[0]): Worker {
  const worker = createWorker(options);
  t.teardown(() => worker.stop());
  return worker;
}

t.test("submit -> SDK worker over the stream -> SUCCEEDED with the typed output and one attempt", async (t) => {
  const length = defineJob({
    name: "text.length",
    input: StringValueSchema,
    output: Int64ValueSchema,
    handler: async (input) => ({ value: BigInt(input.value.length) }),
  });
  const registered = await client.registerJobType(length);
  t.equal(registered.jobType?.inputType, "google.protobuf.StringValue");
  const worker = startWorker(t, { baseUrl: s.url, jobs: [length], concurrency: 2, workerId: "sdk-typed" });
  await worker.start();
  const task = await client.submit(length, { value: "hello, world" });
  const done = await finished(task.id);
  t.equal(done.state, TaskState.SUCCEEDED);
  t.same(taskOutput(done, length), { $typeName: "google.protobuf.Int64Value", value: 12n });
  t.equal(done.attempts.length, 1);
  t.same([done.attempts[0]!.number, done.attempts[0]!.workerId, done.attempts[0]!.outcome], [1, "sdk-typed", AttemptOutcome.SUCCEEDED]);
});

t.test("cancel of a running task fires the handler's AbortSignal; the task stays CANCELLED", async (t) => {
  let aborted: (reason: unknown) => void;
  const abortSeen = new Promise<unknown>((resolve) => (aborted = resolve));
  let started: () => void;
  const startedSeen = new Promise<void>((resolve) => (started = resolve));
  const slow = defineJob({
    name: "slow",
    input: "json",
    output: "json",
    handler: async (_input, ctx) => {
      ctx.signal.addEventListener("abort", () => aborted(ctx.signal.reason));
      started();
      // Ignores the signal on purpose and finishes anyway: the result must not count.
      await abortSeen;
      return "finished after cancel";
    },
  });
  await client.registerJobType(slow);
  const worker = startWorker(t, { baseUrl: s.url, jobs: [slow], concurrency: 1 });
  await worker.start();
  const task = await client.submit(slow, { n: 1 });
  await startedSeen;
  await client.cancel(task.id, "changed my mind");
  const reason = await abortSeen;
  t.match(String((reason as Error)?.message ?? reason), /changed my mind/);
  await new Promise((r) => setTimeout(r, 200));
  const after = await client.getTask(task.id);
  t.equal(after.state, TaskState.CANCELLED);
  t.equal(after.output, undefined, "the late result was not recorded");
  t.equal(after.attempts[0]!.outcome, AttemptOutcome.CANCELLED);
});

t.test("4 workers x 1,000 tasks: every task completed exactly once, none left behind", async (t) => {
  const runs = new Map<string, number>();
  const count = defineJob({
    name: "count",
    input: "json",
    output: "json",
    handler: async (input, ctx) => {
      runs.set(ctx.taskId, (runs.get(ctx.taskId) ?? 0) + 1);
      return input;
    },
  });
  await client.registerJobType(count);
  const workers = Array.from({ length: 4 }, (_, i) => startWorker(t, { baseUrl: s.url, jobs: [count], concurrency: 8, workerId: `load-${i}` }));
  await Promise.all(workers.map((w) => w.start()));
  const submitted = await client.submitBatch(count, Array.from({ length: 1_000 }, (_, i) => ({ i })));
  t.equal(submitted.length, 1_000);
  const deadline = Date.now() + 60_000;
  let succeeded = 0n;
  while (Date.now() < deadline) {
    succeeded = (await client.listTasks({ jobTypes: ["count"], states: [TaskState.SUCCEEDED], pageSize: 1 })).totalCount;
    if (succeeded === 1_000n) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  t.equal(succeeded, 1_000n, "all succeeded");
  t.equal(runs.size, 1_000, "every task ran");
  t.same([...runs.values()].filter((n) => n !== 1), [], "none ran twice");
  const rows = await s.server.engine.database.db.query<{ n: string; workers: string }>(
    "SELECT count(*)::text AS n, count(DISTINCT a.worker_id)::text AS workers FROM task_attempt a JOIN task t ON t.id = a.task_id WHERE t.job_type = 'count'",
  );
  t.same(rows[0], { n: "1000", workers: "4" }, "one attempt row per task, spread over the 4 workers");
  t.equal((await client.listTasks({ jobTypes: ["count"], states: [TaskState.PENDING, TaskState.RUNNING] })).totalCount, 0n, "none left");
});

t.test("a worker reconnects after a server restart and resumes work", async (t) => {
  // A second server of our own on the same database, so the shared one stays up for other tests.
  const port = 0;
  const config = { ...defaultConfig({}), port, databaseUrl: s.databaseUrl, logLevel: "silent", safetyPollMs: 500 };
  let server = await startServer(config, testLogger());
  const fixedPort = server.port;
  t.teardown(() => server.stop());
  const echo = defineJob({ name: "echo", input: "json", output: "json", handler: async (input) => input });
  await client.registerJobType(echo);
  const worker = startWorker(t, { baseUrl: server.url, jobs: [echo], concurrency: 1, reconnect: { initialDelayMs: 50, maxDelayMs: 200 } });
  await worker.start();
  let reconnected = 0;
  worker.on("connected", () => (reconnected += 1));
  await server.stop();
  server = await startServer({ ...config, port: fixedPort }, testLogger());
  const task = await client.submit(echo, { after: "restart" });
  const done = await finished(task.id);
  t.equal(done.state, TaskState.SUCCEEDED);
  t.ok(reconnected >= 1, "the worker connected again");
});

t.test("a handler that ignores its AbortSignal after a timeout: the attempt times out and its late result does not count", async (t) => {
  let finishedLate = 0;
  const stubborn = defineJob({
    name: "stubborn",
    input: "json",
    output: "json",
    handler: async () => {
      await new Promise((r) => setTimeout(r, 800)); // ignores ctx.signal on purpose
      finishedLate += 1;
      return "late";
    },
  });
  await client.registerJobType({ name: "stubborn", defaultTimeoutMs: 200, defaultMaxAttempts: 1 });
  const worker = startWorker(t, { baseUrl: s.url, jobs: [stubborn], concurrency: 1 });
  await worker.start();
  const task = await client.submit(stubborn, null);
  const dead = await finished(task.id);
  t.equal(dead.state, TaskState.DEAD);
  t.same(dead.attempts.map((a) => a.outcome), [AttemptOutcome.TIMED_OUT]);
  t.match(dead.lastError, /attempt 1 timed out after 200 ms/);
  while (finishedLate === 0) await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => setTimeout(r, 200));
  const after = await client.getTask(task.id);
  t.same([after.state, after.output], [TaskState.DEAD, undefined], "the handler's late result was not recorded");
});

t.test("graceful drain under load: no task lost, no attempt burnt", async (t) => {
  const slow = defineJob({
    name: "drain.load",
    input: "json",
    output: "json",
    handler: async (input, ctx) => {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 150);
        ctx.signal.addEventListener("abort", () => (clearTimeout(timer), resolve()));
      });
      ctx.signal.throwIfAborted();
      return input;
    },
  });
  await client.registerJobType({ name: "drain.load", defaultMaxAttempts: 1 });
  // With prefetch, the leaving worker holds tasks it has not started whenever it stops: those at
  // least must be released, however the stop falls among its handlers' 150 ms waves.
  const leaving = startWorker(t, { baseUrl: s.url, jobs: [slow], concurrency: 8, prefetch: 8, workerId: "leaving" });
  await leaving.start();
  const tasks = await client.submitBatch(slow, Array.from({ length: 60 }, (_, i) => ({ i })));
  await new Promise((r) => setTimeout(r, 200));
  await leaving.stop({ graceMs: 50 });
  const staying = startWorker(t, { baseUrl: s.url, jobs: [slow], concurrency: 16, workerId: "staying" });
  await staying.start();
  for (const task of tasks) await finished(task.id, 30_000);
  const rows = await s.server.engine.database.db.query<{ state: string; outcomes: string[] }>(
    `SELECT t.state, array_agg(a.outcome ORDER BY a.number) AS outcomes FROM task t JOIN task_attempt a ON a.task_id = t.id
     WHERE t.job_type = 'drain.load' GROUP BY t.id, t.state`,
  );
  t.equal(rows.length, 60);
  t.same(rows.filter((r) => r.state !== "succeeded"), [], "every task succeeded (max_attempts 1: a burnt attempt would have made it DEAD)");
  const outcomes = rows.flatMap((r) => r.outcomes);
  t.same(outcomes.filter((o) => o !== "succeeded" && o !== "released"), [], "no attempt lost or failed");
  t.ok(outcomes.includes("released"), `${outcomes.filter((o) => o === "released").length} attempt(s) released by the drain`);
});

t.test("a result finished while the server was down is delivered after the restart", async (t) => {
  const config = { ...defaultConfig({}), port: 0, databaseUrl: s.databaseUrl, logLevel: "silent", safetyPollMs: 500, sweepIntervalMs: 200 };
  let server = await startServer(config, testLogger());
  const port = server.port;
  t.teardown(() => server.stop());
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let started!: () => void;
  const running = new Promise<void>((resolve) => (started = resolve));
  const gated = defineJob({ name: "gated", input: "json", output: "json", handler: async () => (started(), await gate, "after restart") });
  await client.registerJobType({ name: "gated", leaseDurationMs: 10_000 });
  const worker = startWorker(t, { baseUrl: server.url, jobs: [gated], concurrency: 1, reconnect: { initialDelayMs: 50, maxDelayMs: 200 } });
  await worker.start();
  const task = await client.submit(gated, null);
  await running;
  await server.stop();
  release(); // the handler finishes while no server is up
  await new Promise((r) => setTimeout(r, 300));
  server = await startServer({ ...config, port }, testLogger());
  const done = await finished(task.id);
  t.equal(done.state, TaskState.SUCCEEDED);
  t.same(done.attempts.map((a) => a.outcome), [AttemptOutcome.SUCCEEDED], "one attempt: the result was re-sent, not re-run");
});

t.test("prefetch: the worker holds concurrency + prefetch tasks but never runs more than concurrency at once", async (t) => {
  let running = 0;
  let peak = 0;
  const gates: (() => void)[] = [];
  const gated = defineJob({
    name: "sdk.prefetch",
    input: "json",
    output: "json",
    handler: async () => {
      running += 1;
      peak = Math.max(peak, running);
      await new Promise<void>((resolve) => gates.push(resolve));
      running -= 1;
      return null;
    },
  });
  await client.registerJobType(gated);
  const ids = (await client.submitBatch(gated, Array.from({ length: 12 }, (_, i) => i))).map((task) => task.id);
  const worker = startWorker(t, { baseUrl: s.url, jobs: [gated], concurrency: 2, prefetch: 3, workerId: "sdk-prefetch" });
  await worker.start();
  // 2 running and 3 held ready: the server assigned 5, the credits hello announced.
  const deadline = Date.now() + 10_000;
  while ((await client.listTasks({ jobTypes: ["sdk.prefetch"], states: [TaskState.RUNNING] })).totalCount < 5n) {
    if (Date.now() > deadline) throw new Error("the worker never held 5 tasks");
    await new Promise((r) => setTimeout(r, 25));
  }
  await new Promise((r) => setTimeout(r, 200));
  t.equal((await client.listTasks({ jobTypes: ["sdk.prefetch"], states: [TaskState.RUNNING] })).totalCount, 5n, "it holds no more than concurrency + prefetch");
  t.equal(running, 2, "only `concurrency` handlers run");
  const listed = (await client.listWorkers()).workers.find((w) => w.workerId === "sdk-prefetch");
  t.equal(listed?.credits, 5, "hello announced concurrency + prefetch credits");
  // Release the handlers one by one until every task is done.
  while (ids.length > 0) {
    const done = await client.getTask(ids[0]!);
    if (done.state === TaskState.SUCCEEDED) {
      ids.shift();
      continue;
    }
    gates.shift()?.();
    await new Promise((r) => setTimeout(r, 10));
  }
  t.equal(peak, 2, "never more than concurrency handlers at once");
});

t.test("prefetch is bounded: 0 or more, and concurrency + prefetch at most 1000", async (t) => {
  const job = defineJob({ name: "sdk.prefetch.bounds", input: "json", output: "json", handler: async () => null });
  t.throws(() => createWorker({ baseUrl: s.url, jobs: [job], concurrency: 10, prefetch: -1 }), { name: "RangeError", message: /prefetch must be an integer from 0 to 990/ });
  t.throws(() => createWorker({ baseUrl: s.url, jobs: [job], concurrency: 10, prefetch: 991 }), { message: /concurrency \+ prefetch at most 1000/ });
  t.throws(() => createWorker({ baseUrl: s.url, jobs: [job], concurrency: 10, prefetch: 1.5 }), { name: "RangeError" });
});
