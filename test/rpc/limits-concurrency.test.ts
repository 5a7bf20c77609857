/**
 * Concurrency limits per job type and per concurrency key, with three replicas on one database:
 * never exceeded (sampled live and rebuilt from the attempt history), fair across keys, changed at
 * runtime, and never bypassed by the unary claim, the direct hand-off or a replica that does not
 * know a job type got limits. The safety poll is a minute, so every wake-up that happens here came
 * from a notification.
 */
import t, { type Test } from "tap";
import { createWorker, defineJob, type JobContext } from "../../src/sdk/index.js";
import { TaskState } from "../../src/gen/taskwire/v1/task_pb.js";
import { taskClaimAvailable } from "../../src/store/sql/task-claim-available.js";
import { taskInsertBatch } from "../../src/store/sql/task-insert-batch.js";
import { historyPeaks, sampleRunning, until } from "../helpers/limits.js";
import { jsonAny } from "../helpers/payload.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const a = await startTestServer(t, { safetyPollMs: 60_000 });
const b = await startTestServer(t, { safetyPollMs: 60_000, databaseUrl: a.databaseUrl });
const c = await startTestServer(t, { safetyPollMs: 60_000, databaseUrl: a.databaseUrl });
const replicas = [a, b, c];
const db = a.server.engine.database.db;

const count = async (sql: string, values: unknown[]) => Number((await db.query<{ n: string }>(sql, values))[0]!.n);
const running = (jobType: string) => count("SELECT count(*) AS n FROM task WHERE job_type = $1 AND state = 'running'", [jobType]);
const succeeded = (jobType: string) => count("SELECT count(*) AS n FROM task WHERE job_type = $1 AND state = 'succeeded'", [jobType]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Submits `n` tasks of the job type with the key (null: none), 100 per batch. */
async function submit(s: TestServer, jobType: string, key: string | null, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i += 100) {
    const { tasks } = await s.tasks.submitBatch({
      tasks: Array.from({ length: Math.min(100, n - i) }, (_, j) => ({ jobType, input: jsonAny({ key, i: i + j }), concurrencyKey: key ?? "" })),
    });
    ids.push(...tasks.map((x) => x.id));
  }
  return ids;
}

/** Starts SDK workers for the job on every replica; stopped when the test ends. */
async function workersOn(t: Test, job: ReturnType<typeof defineJob>, perReplica: number, concurrency: number): Promise<void> {
  for (const [r, s] of replicas.entries()) {
    for (let w = 0; w < perReplica; w++) {
      const worker = createWorker({ baseUrl: s.url, jobs: [job], concurrency, workerId: `${job.name}-${r}-${w}` });
      t.teardown(() => worker.stop({ graceMs: 1_000 }));
      await worker.start();
    }
  }
}
t.test("per key: 3 keys (500, 40 and 1 tasks, in that order) on 3 replicas x 2 workers; max_running_per_key 2 is never exceeded and every key progresses", async (t) => {
  const jobType = "fair.keys";
  await a.jobTypes.registerJobType({ name: jobType, maxRunningPerKey: 2 });
  await submit(a, jobType, "big", 500);
  await submit(b, jobType, "mid", 40);
  await submit(c, jobType, "lone", 1);
  const finished: string[] = [];
  const job = defineJob({
    name: jobType,
    input: "json",
    output: "json",
    handler: async (input: unknown) => {
      await sleep(3 + Math.random() * 4);
      finished.push((input as { key: string }).key);
    },
  });
  const sampler = await sampleRunning(t, a.databaseUrl, jobType);
  await workersOn(t, job, 2, 4);
  await until(async () => (await succeeded(jobType)) === 541, 60_000, "all 541 tasks to succeed");
  const live = await sampler.stop();
  const history = await historyPeaks(db, jobType);

  t.ok(live.samples > 50, `${live.samples} samples of RUNNING counts`);
  for (const key of ["big", "mid", "lone"]) {
    t.ok((live.perKey.get(key) ?? 0) <= 2, `sampled: key ${key} never had more than 2 running (peak ${live.perKey.get(key)})`);
    t.ok((history.perKey.get(key) ?? 0) <= 2, `history: key ${key}'s attempts never overlapped more than 2 at a time (peak ${history.perKey.get(key)})`);
  }
  t.equal(history.perKey.get("big"), 2, "the limit was reached: two of big ran at once (24 worker slots were there)");
  t.equal(history.attempts, 541, "one attempt per task: waiting cost no attempt");
  t.ok(finished.indexOf("lone") < 10, `the lone task, submitted last behind 540 others, finished ${finished.indexOf("lone") + 1}. (FIFO: 541.)`);
  const midDoneAt = finished.lastIndexOf("mid");
  const bigBefore = finished.slice(0, midDoneAt).filter((k) => k === "big").length;
  t.ok(bigBefore < 120, `when the last of mid's 40 finished, big had finished ${bigBefore} of 500: the keys shared the slots (FIFO: 500)`);
});

t.test("per job type: max_running 3 across 3 replicas x 1 worker with 2 slots each, 60 tasks without a key", async (t) => {
  const jobType = "cap.total";
  await a.jobTypes.registerJobType({ name: jobType, maxRunning: 3 });
  await submit(a, jobType, null, 60);
  const job = defineJob({ name: jobType, input: "json", output: "json", handler: async () => void (await sleep(5)) });
  const sampler = await sampleRunning(t, a.databaseUrl, jobType);
  // 6 slots for a limit of 3, and no replica can reach it alone: reaching it takes two at once.
  await workersOn(t, job, 1, 2);
  await until(async () => (await succeeded(jobType)) === 60, 30_000, "all 60 tasks to succeed");
  const live = await sampler.stop();
  const history = await historyPeaks(db, jobType);
  t.ok(live.total <= 3, `sampled: never more than 3 running (peak ${live.total} in ${live.samples} samples)`);
  t.equal(history.total, 3, "history: at most 3 attempts at once, and 3 were reached");
  const byWorker = await db.query<{ r: string }>("SELECT DISTINCT split_part(a.worker_id, '-', 2) AS r FROM task_attempt a JOIN task t ON t.id = a.task_id WHERE t.job_type = $1", [jobType]);
  // Which replicas win the freed slots is up to timing (the one that freed a slot often claims it again).
  t.ok(byWorker.length >= 2, `workers on ${byWorker.length} replicas ran some: the limit held across replicas`);
});

/** A handler whose attempts wait until the test releases them. */
function gatedJob(name: string) {
  const gates = new Map<string, () => void>();
  const job = defineJob({
    name,
    input: "json",
    output: "json",
    handler: (_input: unknown, ctx: JobContext) => new Promise<void>((resolve) => gates.set(ctx.taskId, resolve)),
  });
  const release = (n: number) => {
    const ids = [...gates.keys()].slice(0, n);
    for (const id of ids) {
      gates.get(id)!();
      gates.delete(id);
    }
    return ids.length;
  };
  return { job, gates, release };
}

t.test("limits changed at runtime apply to the next claims on every replica: raise, lower, pause with 0, remove", async (t) => {
  const jobType = "change.keys";
  await a.jobTypes.registerJobType({ name: jobType, maxRunningPerKey: 1 });
  await submit(a, jobType, "k", 8);
  const { job, gates, release } = gatedJob(jobType);
  // The worker is on replica C; the changes are registered through A.
  const worker = createWorker({ baseUrl: c.url, jobs: [job], concurrency: 6, workerId: "changer" });
  t.teardown(() => worker.stop({ graceMs: 100 }));
  await worker.start();
  await until(async () => (await running(jobType)) === 1, 5_000, "the first task to run");
  await sleep(300);
  t.equal(await running(jobType), 1, "max_running_per_key 1: one runs, although the worker has 6 slots");

  await a.jobTypes.registerJobType({ name: jobType, maxRunningPerKey: 3 });
  await until(async () => (await running(jobType)) === 3, 5_000, "3 to run after raising the limit (the safety poll is 60 s away)");
  t.pass("raised to 3 on replica A: replica C's worker got two more at once");

  await a.jobTypes.registerJobType({ name: jobType, maxRunningPerKey: 1 });
  await until(() => gates.size === 3, 5_000, "the three attempts to be in their handlers");
  release(2);
  await until(async () => (await succeeded(jobType)) === 2, 5_000, "two to finish");
  await sleep(300);
  t.equal(await running(jobType), 1, "lowered to 1: two finished, none started while one still runs");
  release(1);
  await until(async () => (await succeeded(jobType)) === 3, 5_000, "the third to finish");
  await until(async () => (await running(jobType)) === 1, 5_000, "the next one to start");
  t.pass("below the limit again: the next task started");

  await a.jobTypes.registerJobType({ name: jobType, maxRunning: 0 });
  await until(() => gates.size === 1, 5_000, "the running attempt to be in its handler");
  release(1);
  await until(async () => (await succeeded(jobType)) === 4, 5_000, "the fourth to finish");
  await sleep(300);
  t.equal(await running(jobType), 0, "max_running 0: nothing starts");
  t.equal(await count("SELECT count(*) AS n FROM task WHERE job_type = $1 AND state = 'pending'", [jobType]), 4, "the other four wait, PENDING");

  await a.jobTypes.registerJobType({ name: jobType });
  await until(async () => (await running(jobType)) === 4, 5_000, "all four to run once the limits are gone");
  t.pass("registered without limits: the rest run at once, as many as the worker takes");
  await until(() => gates.size === 4, 5_000, "the four attempts to be in their handlers");
  release(4);
  await until(async () => (await succeeded(jobType)) === 8, 5_000, "all to finish");
});

t.test("a limit set while tasks run counts them; a task retried after its job type got limits obeys them", async (t) => {
  const jobType = "late.limit";
  await a.jobTypes.registerJobType({ name: jobType });
  await submit(a, jobType, null, 5);
  const first = (await b.workers.claimTasks({ workerId: "early", jobTypes: [jobType], maxTasks: 2 })).assignments;
  t.equal(first.length, 2, "two claimed before the job type had limits");
  await a.jobTypes.registerJobType({ name: jobType, maxRunning: 2 });
  t.same((await b.workers.claimTasks({ workerId: "late", jobTypes: [jobType], maxTasks: 10 })).assignments, [], "max_running 2 and two already running: none");
  await b.workers.completeTask({ completion: { taskId: first[0]!.taskId, attempt: first[0]!.attempt, leaseToken: first[0]!.leaseToken } });
  const next = (await c.workers.claimTasks({ workerId: "late", jobTypes: [jobType], maxTasks: 10 })).assignments;
  t.equal(next.length, 1, "one finished: one more, on another replica");

  // A task cancelled while the job type had no limits, retried after it got them.
  const other = "late.retry";
  await a.jobTypes.registerJobType({ name: other });
  const [x, y] = await submit(a, other, null, 2);
  await a.tasks.cancel({ id: x! });
  await a.tasks.cancel({ id: y! });
  await a.jobTypes.registerJobType({ name: other, maxRunning: 1 });
  await a.tasks.retry({ id: x! });
  await a.tasks.retry({ id: y! });
  const claimed = (await a.workers.claimTasks({ workerId: "retrier", jobTypes: [other], maxTasks: 10 })).assignments;
  t.equal(claimed.length, 1, "the retried tasks are claimable, one at a time");
});

t.test("unary ClaimTasks: round-robin over keys, the tasks without a key one group, only keys capped", async (t) => {
  const jobType = "mixed.keys";
  await a.jobTypes.registerJobType({ name: jobType, maxRunningPerKey: 1 });
  await submit(a, jobType, "b", 2);
  await submit(a, jobType, null, 3);
  await submit(a, jobType, "a", 3);
  const claimed = (await b.workers.claimTasks({ workerId: "unary", jobTypes: [jobType], maxTasks: 10 })).assignments;
  const keys = await db.query<{ id: string; k: string | null }>("SELECT id::text, concurrency_key AS k FROM task WHERE id = ANY($1::bigint[])", [claimed.map((x) => x.taskId)]);
  const keyOf = new Map(keys.map((r) => [r.id, r.k ?? "-"]));
  t.same(claimed.map((x) => keyOf.get(x.taskId)), ["-", "a", "b", "-", "-"], "first turn: no key, a, b; then only the group without a key has room");
  t.same((await c.workers.claimTasks({ workerId: "unary", jobTypes: [jobType], maxTasks: 10 })).assignments, [], "a and b are at their limit; nothing else is pending without a key");
});

t.test("the direct hand-off never starts a limited job type's task: an idle worker waits for the claim, which obeys the limit", async (t) => {
  const jobType = "direct.limited";
  await a.jobTypes.registerJobType({ name: jobType, maxRunning: 1 });
  const { job, gates, release } = gatedJob(jobType);
  const worker = createWorker({ baseUrl: a.url, jobs: [job], concurrency: 3, workerId: "idle-limited" });
  t.teardown(() => worker.stop({ graceMs: 100 }));
  await worker.start();
  await sleep(100); // its first claim finds nothing: the session is idle
  const [one] = await submit(a, jobType, null, 1);
  await until(() => gates.size === 1, 5_000, "the first task to reach the worker");
  const [row] = await db.query<{ started: string; created: string }>(
    "SELECT a.started_at::text AS started, t.created_at::text AS created FROM task t JOIN task_attempt a ON a.task_id = t.id WHERE t.id = $1",
    [one],
  );
  t.not(row!.started, row!.created, "claimed after its insert, not inserted RUNNING (a direct hand-off starts in the insert's transaction)");
  const [two] = await submit(a, jobType, null, 1);
  await sleep(300);
  t.equal((await a.tasks.getTask({ id: two! })).task!.state, TaskState.PENDING, "with one running and max_running 1, the second waits although the worker has two free slots");
  release(1);
  await until(() => gates.size === 1 && !gates.has(one!), 5_000, "the second to start after the first finished");
  release(1);
  // The insert statement checks too: a worker id for a limited job type queues the task.
  const { tasks } = await taskInsertBatch(db, [{ namespace: "default", jobType, input: { typeUrl: "type.googleapis.com/google.protobuf.Value", value: new Uint8Array() }, priority: 0, maxAttempts: 1, timeoutMs: null, runAt: null, backoffBaseMs: 0, backoffCapMs: 0 }], ["stale-replica"]);
  t.equal(tasks[0]!.state, "pending", "a direct hand-off planned from an out-of-date cache is queued by the insert itself");
});

t.test("the one-statement claim never takes a limited job type's tasks, whatever the caller believes", async (t) => {
  const jobType = "guarded";
  await a.jobTypes.registerJobType({ name: jobType, maxRunningPerKey: 5 });
  await submit(a, jobType, "g", 3);
  t.same(await taskClaimAvailable(db, { namespace: "default", jobTypes: [jobType], limit: 10, workerId: "stale" }), [], "no rows for a job type with limits");
  t.equal((await a.workers.claimTasks({ workerId: "right", jobTypes: [jobType], maxTasks: 10 })).assignments.length, 3, "the limited claim takes them");
});

t.test("a job type's limits take effect on replicas that cached it before the change", async (t) => {
  const jobType = "cached.change";
  await a.jobTypes.registerJobType({ name: jobType });
  await submit(a, jobType, null, 6);
  // Replica B reads (and caches) the job type without limits.
  t.equal((await b.workers.claimTasks({ workerId: "b1", jobTypes: [jobType], maxTasks: 1 })).assignments.length, 1);
  t.equal(b.server.engine.jobTypes.limitedHint("default", jobType), false, "B has it cached, without limits");
  await a.jobTypes.registerJobType({ name: jobType, maxRunning: 2 });
  // The registration's NOTIFY makes B drop its copy (an expired copy would still answer false).
  await until(() => b.server.engine.jobTypes.limitedHint("default", jobType) === undefined, 5_000, "B to drop its cached copy");
  const got = (await b.workers.claimTasks({ workerId: "b2", jobTypes: [jobType], maxTasks: 10 })).assignments;
  t.equal(got.length, 1, "B's next claim obeys max_running 2 (one was running)");
  t.equal(b.server.engine.jobTypes.limitedHint("default", jobType), true, "and B knows the job type has limits now");
});

t.test("a slot freed by the sweeper (a lease that ran out) wakes a worker on another replica", async (t) => {
  const jobType = "swept.slot";
  await a.jobTypes.registerJobType({ name: jobType, maxRunning: 1, defaultMaxAttempts: 1, leaseDuration: { seconds: 1n, nanos: 0 } });
  const [ghosted, waiting] = await submit(a, jobType, null, 2);
  const held = (await a.workers.claimTasks({ workerId: "ghost", jobTypes: [jobType], maxTasks: 5 })).assignments;
  t.same(held.map((x) => x.taskId), [ghosted], "a unary worker takes the one slot and never reports");
  const started: string[] = [];
  const job = defineJob({ name: jobType, input: "json", output: "json", handler: async (_i: unknown, ctx: JobContext) => void started.push(ctx.taskId) });
  const worker = createWorker({ baseUrl: c.url, jobs: [job], concurrency: 2, workerId: "after-sweep" });
  t.teardown(() => worker.stop({ graceMs: 100 }));
  await worker.start();
  await until(() => started.length > 0, 10_000, "the waiting task to start once the lease was swept");
  t.same(started, [waiting], "the waiting task ran on replica C's worker");
  t.equal((await a.tasks.getTask({ id: ghosted! })).task!.state, TaskState.DEAD, "the ghosted task was swept (its only attempt lost)");
});
