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
  let claimedMeanwhile = 0;
  let pruning = true;
  const claiming = (async () => {
    while (pruning) claimedMeanwhile += (await s.workers.claimTasks({ workerId: "w-busy", jobTypes: ["ret.busy"], maxTasks: 5 })).assignments.length;
  })();
  const pruner = new RetentionPruner(db, testLogger(), 3_600_000, 100);
  t.teardown(() => pruner.stop());
  const batches: number[] = [];
  pruner.on("pruner:deleted", (n) => batches.push(n));
  await pruner.prune();
  pruning = false;
  await claiming;

  t.same(batches, [100, 100, 100, 50], "350 tasks in batches of at most 100");
  t.ok(claimedMeanwhile > 0, `claims went on during the pass (${claimedMeanwhile} tasks claimed)`);
  t.equal(await count("SELECT count(*) AS n FROM task WHERE id = ANY($1::bigint[])", [short]), 0, "the expired tasks are gone");
  t.equal(await count("SELECT count(*) AS n FROM task_attempt WHERE task_id = ANY($1::bigint[])", [short]), 0, "with their attempts");
  t.equal(await count("SELECT count(*) AS n FROM task_event WHERE task_id = ANY($1::bigint[])", [short]), 0, "and their events");
  t.equal(await count("SELECT count(*) AS n FROM task WHERE job_type IN ('ret.long', 'ret.keep')"), 10, "unexpired and keep-forever tasks stay");
  t.equal((await s.tasks.getTask({ id: unfinished.id })).task?.state, TaskState.PENDING, "an unfinished task of the short job type stays (PENDING)");
  await pruner.prune();
  t.same(batches, [100, 100, 100, 50], "a second pass finds nothing");
});
