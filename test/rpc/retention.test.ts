/** Retention: finished tasks, with their attempts and events, are deleted after the job type's retention, in bounded batches. */
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import t from "tap";
import { TaskState } from "../../src/gen/taskwire/v1/task_pb.js";
import { RetentionPruner } from "../../src/engine/retention-pruner.js";
import { jsonAny } from "../helpers/payload.js";
import { rejection } from "../helpers/rejection.js";
import { testLogger } from "../helpers/logger.js";
import { startTestServer } from "../helpers/server.js";

const s = await startTestServer(t);
const db = s.server.engine.database.db;
const count = async (sql: string, values: unknown[] = []) => Number((await db.query<{ n: string }>(sql, values))[0]!.n);

t.test("RegisterJobType: 7 days by default, 0 keeps forever, out-of-range values are refused", async (t) => {
  const byDefault = await s.jobTypes.registerJobType({ name: "ret.default" });
  t.equal(byDefault.jobType?.retention?.seconds, 7n * 24n * 3600n);
  const forever = await s.jobTypes.registerJobType({ name: "ret.forever", retention: durationFromMs(0) });
  t.equal(forever.jobType?.retention, undefined, "unset in the answer: kept forever");
  t.equal((await s.jobTypes.getJobType({ name: "ret.forever" })).jobType?.retention, undefined);
  const tooShort = await rejection(() => s.jobTypes.registerJobType({ name: "ret.bad", retention: durationFromMs(500) }));
  t.equal(tooShort.code, Code.InvalidArgument);
  t.match(tooShort.message, /retention.*500 ms; allowed: 1000 ms to 315360000000 ms/);
});

/** Submits n tasks of a job type and finishes them (claimed and completed, through the batched path). */
async function finish(jobType: string, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let done = 0; done < n; done += 1_000) {
    const batch = (await s.tasks.submitBatch({ tasks: Array.from({ length: Math.min(1_000, n - done) }, (_, i) => ({ jobType, input: jsonAny(i) })) })).tasks;
    const claimed = (await s.workers.claimTasks({ workerId: "w-ret", jobTypes: [jobType], maxTasks: 1_000 })).assignments;
    await Promise.all(claimed.map((a) => s.workers.completeTask({ completion: { taskId: a.taskId, attempt: a.attempt, leaseToken: a.leaseToken } })));
    ids.push(...batch.map((x) => x.id));
  }
  return ids;
}

t.test("expired finished tasks go with their attempts and events, in bounded batches, while claims continue", async (t) => {
  await s.jobTypes.registerJobType({ name: "ret.short", retention: durationFromMs(1_000) });
  await s.jobTypes.registerJobType({ name: "ret.long", retention: durationFromMs(3_600_000) });
  await s.jobTypes.registerJobType({ name: "ret.keep", retention: durationFromMs(0) });
  await s.jobTypes.registerJobType({ name: "ret.busy" });
  const short = await finish("ret.short", 350);
  await finish("ret.long", 5);
  await finish("ret.keep", 5);
  const unfinished = (await s.tasks.submit({ task: { jobType: "ret.short", input: jsonAny("stays pending") } })).task!;
  t.equal(await count("SELECT count(*) AS n FROM task_event WHERE task_id = ANY($1::bigint[])", [short]), 350 * 3, "each finished task has 3 events");
  await new Promise((r) => setTimeout(r, 1_100));

  // Claims of another job type go on while the pruner runs.
  await s.tasks.submitBatch({ tasks: Array.from({ length: 200 }, (_, i) => ({ jobType: "ret.busy", input: jsonAny(i) })) });
  // A log of what happened in which order: each claim that returned and each batch deleted.
  const log: string[] = [];
  let pruning = true;
  const claiming = (async () => {
    while (pruning) {
      const n = (await s.workers.claimTasks({ workerId: "w-busy", jobTypes: ["ret.busy"], maxTasks: 1 })).assignments.length; // one at a time: many claims, so some fall between batches
      if (pruning) log.push(`claim:${n}`);
    }
  })();
  const pruner = new RetentionPruner(db, testLogger(), 3_600_000, 100);
  t.teardown(() => pruner.stop());
  const batches: number[] = [];
  pruner.on("pruner:deleted", (n) => {
    batches.push(n);
    log.push(`batch:${n}`);
  });
  await pruner.prune();
  pruning = false;
  await claiming;

  t.same(batches, [100, 100, 100, 50], "350 tasks in batches of at most 100");
  const firstBatch = log.indexOf("batch:100");
  const lastBatch = log.lastIndexOf("batch:50");
  const between = log.slice(firstBatch, lastBatch).filter((x) => x.startsWith("claim:") && x !== "claim:0");
  t.ok(between.length > 0, `claims returned tasks between the first and the last batch (${between.length} claims), so no batch held the claim path`);
  t.equal(await count("SELECT count(*) AS n FROM task WHERE id = ANY($1::bigint[])", [short]), 0, "the expired tasks are gone");
  t.equal(await count("SELECT count(*) AS n FROM task_attempt WHERE task_id = ANY($1::bigint[])", [short]), 0, "with their attempts");
  t.equal(await count("SELECT count(*) AS n FROM task_event WHERE task_id = ANY($1::bigint[])", [short]), 0, "and their events");
  t.equal(await count("SELECT count(*) AS n FROM task WHERE job_type IN ('ret.long', 'ret.keep')"), 10, "unexpired and keep-forever tasks stay");
  t.equal((await s.tasks.getTask({ id: unfinished.id })).task?.state, TaskState.PENDING, "an unfinished task of the short job type stays (PENDING)");
  await pruner.prune();
  t.same(batches, [100, 100, 100, 50], "a second pass finds nothing");
});

t.test("what issue 8 adds goes with the tasks: fire-time bookkeeping and idempotency keys", async (t) => {
  await s.jobTypes.registerJobType({ name: "ret.keyed", retention: durationFromMs(1_000), dedupWindow: durationFromMs(1_000) });
  const keyed = (await s.tasks.submit({ task: { jobType: "ret.keyed", input: jsonAny(1), idempotencyKey: "kept-until-pruned" } })).task!;
  const claimed = (await s.workers.claimTasks({ workerId: "w-ret", jobTypes: ["ret.keyed"], maxTasks: 10 })).assignments;
  await s.workers.completeTask({ completion: { taskId: claimed[0]!.taskId, attempt: 1, leaseToken: claimed[0]!.leaseToken } });
  // A finished scheduled task, as the scheduler writes it.
  const [fired] = await db.query<{ id: string }>(
    `INSERT INTO task (namespace, job_type, input_type_url, input, priority, max_attempts, attempt, state, finished_at, schedule_name, schedule_fire_at)
     VALUES ('default', 'ret.keyed', 'type.googleapis.com/google.protobuf.Value', '\\x'::bytea, 0, 1, 1, 'succeeded', now(), 'ret.sched', '2030-01-01T00:00:00Z')
     RETURNING id::text AS id`,
  );
  await new Promise((r) => setTimeout(r, 1_100));
  const pruner = new RetentionPruner(db, testLogger(), 3_600_000, 100);
  t.teardown(() => pruner.stop());
  await pruner.prune();
  t.equal(await count("SELECT count(*) AS n FROM task WHERE id = ANY($1::bigint[])", [[keyed.id, fired!.id]]), 0, "the keyed and the scheduled task are gone");
  t.equal(await count("SELECT count(*) AS n FROM task WHERE schedule_name = 'ret.sched'"), 0, "with the fire-time record");
  const again = (await s.tasks.submit({ task: { jobType: "ret.keyed", input: jsonAny(2), idempotencyKey: "kept-until-pruned" } })).task!;
  t.equal(again.deduplicated, false, "and the key is free");
});

t.test("every replica prunes by itself on its interval; two at once delete each task once", async (t) => {
  const p1 = await startTestServer(t, { retentionIntervalMs: 100 });
  const p2 = await startTestServer(t, { retentionIntervalMs: 100, databaseUrl: p1.databaseUrl });
  await p1.jobTypes.registerJobType({ name: "ret.auto", retention: durationFromMs(1_000) });
  const deleted = [0, 0];
  p1.server.engine.pruner.on("pruner:deleted", (n) => (deleted[0]! += n));
  p2.server.engine.pruner.on("pruner:deleted", (n) => (deleted[1]! += n));
  const ids = (await p1.tasks.submitBatch({ tasks: Array.from({ length: 300 }, (_, i) => ({ jobType: "ret.auto", input: jsonAny(i) })) })).tasks.map((x) => x.id);
  for (let i = 0; i < 3; i++) {
    const claimed = (await p1.workers.claimTasks({ workerId: "w-auto", jobTypes: ["ret.auto"], maxTasks: 100 })).assignments;
    await Promise.all(claimed.map((x) => p1.workers.completeTask({ completion: { taskId: x.taskId, attempt: x.attempt, leaseToken: x.leaseToken } })));
  }
  const pdb = p1.server.engine.database.db;
  const left = async () => Number((await pdb.query<{ n: string }>("SELECT count(*) AS n FROM task WHERE id = ANY($1::bigint[])", [ids]))[0]!.n);
  const deadline = Date.now() + 10_000;
  while ((await left()) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  t.equal(await left(), 0, "the loops deleted every expired task without being called");
  t.equal(deleted[0]! + deleted[1]!, 300, `each task deleted once (replica 1: ${deleted[0]}, replica 2: ${deleted[1]})`);
});
