/**
 * Rate limits across two replicas on one database. The semantics (src/core/claim-limits.ts): at
 * most max_starts attempt starts in any interval of length `window`, by the attempts' started_at;
 * the bound is exact, so the tolerance is zero over the limit. Tasks over the limit stay PENDING
 * and start when allowed: the safety poll is a minute, so only the dispatchers' rate timers can
 * start them.
 */
import t from "tap";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createWorker, defineJob, type JobContext } from "../../src/sdk/index.js";
import { until } from "../helpers/limits.js";
import { testLogger } from "../helpers/logger.js";
import { jsonAny } from "../helpers/payload.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const a = await startTestServer(t, { safetyPollMs: 60_000 });
const b = await startTestServer(t, { safetyPollMs: 60_000, databaseUrl: a.databaseUrl });
const db = a.server.engine.database.db;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Attempt start times (epoch ms, µs precision) of the job type, ascending, with their workers. */
async function starts(jobType: string): Promise<{ at: number; worker: string; attempt: number }[]> {
  const rows = await db.query<{ at: string; worker: string; attempt: number }>(
    `SELECT (extract(epoch FROM a.started_at) * 1000)::float8::text AS at, a.worker_id AS worker, a.number AS attempt
     FROM task t JOIN task_attempt a ON a.task_id = t.id WHERE t.job_type = $1 ORDER BY a.started_at`,
    [jobType],
  );
  return rows.map((r) => ({ at: Number(r.at), worker: r.worker, attempt: r.attempt }));
}

/** The most starts in any closed interval [s, s + windowMs] (s: a start). */
function peakInWindow(times: readonly number[], windowMs: number): number {
  let peak = 0;
  for (let i = 0; i < times.length; i++) {
    let n = 0;
    for (let j = i; j < times.length && times[j]! <= times[i]! + windowMs; j++) n++;
    peak = Math.max(peak, n);
  }
  return peak;
}

async function submit(s: TestServer, jobType: string, n: number, extra: { maxAttempts?: number } = {}): Promise<string[]> {
  const { tasks } = await s.tasks.submitBatch({
    tasks: Array.from({ length: n }, (_, i) => ({ jobType, input: jsonAny(i), ...extra, retry: { backoffBase: durationFromMs(0), backoffCap: durationFromMs(0) } })),
  });
  return tasks.map((x) => x.id);
}

t.test("rate 10 per second, 40 tasks, 4 workers on 2 replicas: both replicas start tasks, never more than 10 starts in any second, the limit is reached, all 40 run", async (t) => {
  const jobType = "rate.two";
  await a.jobTypes.registerJobType({ name: jobType, rateLimit: { maxStarts: 10, window: durationFromMs(1_000) } });
  await submit(a, jobType, 20);
  await submit(b, jobType, 20);
  // Each replica's workers hold 8 tasks at most (2 x 4), fewer than a window's 10 starts, and
  // their handlers return only once both replicas have started one: a replica that took every
  // start it could blocks until the other claims, so both claim whichever is faster.
  const startedOn = [false, false];
  let bothStarted!: () => void;
  const gate = new Promise<void>((resolve) => (bothStarted = resolve));
  const jobOn = (r: number) =>
    defineJob({
      name: jobType,
      input: "json",
      output: "json",
      handler: async () => {
        startedOn[r] = true;
        if (startedOn[0] && startedOn[1]) bothStarted();
        await gate;
      },
    });
  for (const [r, s] of [a, b].entries()) {
    for (let w = 0; w < 2; w++) {
      const worker = createWorker({ baseUrl: s.url, jobs: [jobOn(r)], concurrency: 4, workerId: `rate-${r}-${w}` });
      t.teardown(() => worker.stop({ graceMs: 1_000 }));
      await worker.start();
    }
  }
  await until(async () => (await a.tasks.listTasks({ jobTypes: [jobType], states: [4] })).totalCount === 40n, 30_000, "all 40 to succeed (the handlers wait until both replicas started one)");
  const history = await starts(jobType);
  const times = history.map((s) => s.at);
  t.equal(history.length, 40, "40 attempts: one per task, none failed while waiting");
  t.ok(history.every((s) => s.attempt === 1), "every task succeeded at its first attempt");
  const perReplica = [0, 1].map((r) => history.filter((s) => s.worker.startsWith(`rate-${r}-`)).length);
  t.ok(perReplica[0]! > 0 && perReplica[1]! > 0, `both replicas started tasks (A: ${perReplica[0]}, B: ${perReplica[1]})`);
  t.equal(perReplica[0]! + perReplica[1]!, 40, "and between them all 40");
  const peak = peakInWindow(times, 1_000);
  t.ok(peak <= 10, `at most 10 starts in any 1-second interval across both replicas (peak ${peak}); one limiter per process would have allowed 20`);
  t.equal(peak, 10, "and the limit was reached: the waiting tasks were not held back further");
  t.ok(times.at(-1)! - times[0]! > 3_000, `40 starts at 10 per second span more than 3 s (${Math.round(times.at(-1)! - times[0]!)} ms)`);
});

t.test("retries count: attempts of a task that fails at once (no backoff) start at most 2 per second", async (t) => {
  const jobType = "rate.retries";
  await a.jobTypes.registerJobType({ name: jobType, rateLimit: { maxStarts: 2, window: durationFromMs(1_000) } });
  const [id] = await submit(a, jobType, 1, { maxAttempts: 4 });
  const job = defineJob({
    name: jobType,
    input: "json",
    output: "json",
    handler: async (_input: unknown, ctx: JobContext) => {
      if (ctx.attempt < 4) throw new Error(`attempt ${ctx.attempt} fails`);
    },
  });
  const worker = createWorker({ baseUrl: b.url, jobs: [job], concurrency: 2, workerId: "retrier", logger: testLogger() });
  t.teardown(() => worker.stop({ graceMs: 1_000 }));
  await worker.start();
  await until(async () => (await a.tasks.getTask({ id: id! })).task!.state === 4, 20_000, "the task to succeed at its 4th attempt");
  const history = await starts(jobType);
  t.same(history.map((s) => s.attempt), [1, 2, 3, 4], "four attempts");
  t.ok(peakInWindow(history.map((s) => s.at), 1_000) <= 2, "never more than 2 in any second");
  t.ok(history[2]!.at - history[0]!.at > 1_000, `the third attempt waited for the window: ${Math.round(history[2]!.at - history[0]!.at)} ms after the first`);
});

t.test("max_starts 0 starts nothing; raising it starts the waiting tasks at once, on the other replica too", async (t) => {
  const jobType = "rate.paused";
  await a.jobTypes.registerJobType({ name: jobType, rateLimit: { maxStarts: 0, window: durationFromMs(60_000) } });
  await submit(a, jobType, 3);
  const ran: string[] = [];
  const job = defineJob({ name: jobType, input: "json", output: "json", handler: async (_i: unknown, ctx: JobContext) => void ran.push(ctx.taskId) });
  const worker = createWorker({ baseUrl: b.url, jobs: [job], concurrency: 5, workerId: "paused" });
  t.teardown(() => worker.stop({ graceMs: 1_000 }));
  await worker.start();
  await sleep(400);
  t.same(ran, [], "nothing started with max_starts 0");
  await a.jobTypes.registerJobType({ name: jobType, rateLimit: { maxStarts: 2, window: durationFromMs(60_000) } });
  await until(() => ran.length === 2, 5_000, "two to start once the limit is 2 per minute");
  await sleep(300);
  t.equal(ran.length, 2, "and only two: the third waits for the minute to pass");
  const pending = (await a.tasks.listTasks({ jobTypes: [jobType], states: [2] })).totalCount;
  t.equal(pending, 1n, "it waits PENDING");
});
