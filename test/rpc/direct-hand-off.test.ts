/**
 * Direct hand-off: a task submitted while a worker of its job type is idle is inserted RUNNING,
 * leased to that worker, and pushed to its stream at once, never overtaking a task already queued.
 */
import { create } from "@bufbuild/protobuf";
import t, { type Test } from "tap";
import type { Assignment, NewTask } from "../../src/core/task.js";
import { Dispatcher } from "../../src/dispatch/dispatcher.js";
import { ReportBatcher } from "../../src/dispatch/report-batcher.js";
import { AttemptOutcome, TaskState } from "../../src/gen/taskwire/v1/task_pb.js";
import { WorkerDrainSchema } from "../../src/gen/taskwire/v1/worker_pb.js";
import { taskInsertBatch } from "../../src/store/sql/task-insert-batch.js";
import { openClaimStream } from "../helpers/claim-stream.js";
import { testLogger } from "../helpers/logger.js";
import { jsonAny } from "../helpers/payload.js";
import { startTestServer } from "../helpers/server.js";

const s = await startTestServer(t, { safetyPollMs: 60_000 });
const db = s.server.engine.database.db;

const events = (taskId: string) =>
  db.query<{ seq: string; kind: string; state: string; previous_state: string | null; attempt: number; worker_id: string | null }>(
    "SELECT seq::text AS seq, kind, state, previous_state, attempt, worker_id FROM task_event WHERE task_id = $1 ORDER BY seq",
    [taskId],
  );

/** Opens a raw worker stream and waits until its first claim has found the queue empty. */
async function idleWorker(t: Test, jobType: string, credits: number, workerId: string) {
  const w = openClaimStream(s.workers, { workerId, jobTypes: [jobType], credits });
  t.teardown(() => w.abort());
  await w.next("welcome");
  const session = () => [...(s.server.engine.dispatcher as unknown as { sessions: Set<{ workerId: string; mayHaveWork: boolean; claiming: boolean }> }).sessions].find((x) => x.workerId === workerId);
  const deadline = Date.now() + 5_000;
  while (session()?.mayHaveWork !== false || session()?.claiming !== false) {
    if (Date.now() > deadline) throw new Error("the session never went idle");
    await new Promise((r) => setTimeout(r, 5));
  }
  return w;
}

t.test("an idle worker gets a submitted task straight away: RUNNING in Submit's answer, pending then running in the events", async (t) => {
  await s.jobTypes.registerJobType({ name: "direct.idle" });
  const w = await idleWorker(t, "direct.idle", 2, "w-direct");
  const { task } = await s.tasks.submit({ task: { jobType: "direct.idle", input: jsonAny({ n: 1 }) } });
  t.equal(task!.state, TaskState.RUNNING, "Submit answers with the task as committed: already running");
  t.equal(task!.attempt, 1);
  t.equal(task!.workerId, "w-direct");
  const [a] = (await w.next("assignments")).assignments;
  t.equal(a!.taskId, task!.id, "the stream got the task without a claim");
  t.equal(a!.attempt, 1);
  t.same(
    (await events(task!.id)).map((e) => [e.kind, e.state, e.previous_state, e.attempt, e.worker_id]),
    [
      ["created", "pending", null, 0, null],
      ["state_changed", "running", "pending", 1, "w-direct"],
    ],
    "watchers see the whole life: created PENDING, then PENDING -> RUNNING",
  );
  const [first, second] = await events(task!.id);
  t.equal(BigInt(second!.seq), BigInt(first!.seq) + 1n, "consecutive sequence numbers");
  const running = (await s.tasks.getTask({ id: task!.id })).task!;
  t.same(running.attempts.map((x) => [x.number, x.workerId, x.outcome]), [[1, "w-direct", AttemptOutcome.RUNNING]], "the attempt's history row exists");
  w.send({ case: "complete", value: { $typeName: "taskwire.v1.TaskCompletion", taskId: a!.taskId, attempt: 1, leaseToken: a!.leaseToken, output: jsonAny("ok") } });
  t.match(await w.next("reportResult"), { accepted: true });
  t.equal((await s.tasks.getTask({ id: task!.id })).task!.state, TaskState.SUCCEEDED);
});

t.test("no hand-off past a worker's free credits, for a delayed task, or to a draining worker", async (t) => {
  await s.jobTypes.registerJobType({ name: "direct.bounds" });
  const w = await idleWorker(t, "direct.bounds", 2, "w-bounds");
  const batch = (await s.tasks.submitBatch({ tasks: Array.from({ length: 5 }, (_, i) => ({ jobType: "direct.bounds", input: jsonAny(i) })) })).tasks;
  t.same(batch.map((x) => x.state), [TaskState.RUNNING, TaskState.RUNNING, TaskState.PENDING, TaskState.PENDING, TaskState.PENDING], "the first two, in submit order, fill its 2 credits");
  const delayed = (await s.tasks.submit({ task: { jobType: "direct.bounds", input: jsonAny("later"), runAt: { seconds: BigInt(Math.floor(Date.now() / 1000) + 3600), nanos: 0 } } })).task!;
  t.equal(delayed.state, TaskState.PENDING, "a task for later waits for its time");
  w.send({ case: "drain", value: create(WorkerDrainSchema) });
  await new Promise((r) => setTimeout(r, 50));
  await s.jobTypes.registerJobType({ name: "direct.drained" });
  const d = await idleWorker(t, "direct.drained", 2, "w-drained");
  d.send({ case: "drain", value: create(WorkerDrainSchema) });
  await new Promise((r) => setTimeout(r, 50));
  t.equal((await s.tasks.submit({ task: { jobType: "direct.drained", input: jsonAny(1) } })).task!.state, TaskState.PENDING, "a draining worker gets nothing");
});

t.test("a hand-off never overtakes a ready task already queued with the same or a higher priority", async (t) => {
  await s.jobTypes.registerJobType({ name: "direct.queue" });
  const task = (i: number, priority: number): NewTask => ({
    namespace: "default",
    jobType: "direct.queue",
    input: { typeUrl: "type.googleapis.com/google.protobuf.Value", value: jsonAny(i).value },
    priority,
    maxAttempts: 3,
    timeoutMs: null,
    runAt: null,
    backoffBaseMs: 0,
    backoffCapMs: 0,
  });
  // Straight through the statement, as if another replica had queued a task a moment ago.
  const queued = (await taskInsertBatch(db, [task(0, 5)])).tasks[0]!;
  t.equal(queued.state, "pending");
  const { tasks } = await taskInsertBatch(db, [task(1, 5), task(2, 4), task(3, 6)], ["w-x", "w-x", "w-x"]);
  t.same(tasks.map((x) => x.state), ["pending", "pending", "running"], "same or lower priority than the queued one: queued too; higher: handed off");
  t.equal(tasks[2]!.workerId, "w-x");
});

t.test("a worker that leaves between the plan and the insert: its tasks go back to PENDING without using an attempt", async (t) => {
  await s.jobTypes.registerJobType({ name: "direct.leaving" });
  const dispatcher = new Dispatcher({ db, pool: s.server.engine.database.pool, limits: s.server.engine.jobTypes, batcher: new ReportBatcher(db), logger: testLogger(), safetyPollMs: 60_000 });
  t.teardown(() => dispatcher.stop());
  const assigned: Assignment[] = [];
  let claimed = 0;
  dispatcher.on("task:claimed", () => (claimed += 1));
  const session = dispatcher.open({ namespace: "default", workerId: "w-leaving", jobTypes: ["direct.leaving"], credits: 4, sink: { assign: (as) => assigned.push(...as), revoke: () => {} } });
  // Its first claim finds nothing; then it is idle.
  const deadline = Date.now() + 5_000;
  let plan;
  while ((plan = dispatcher.planDirect([{ namespace: "default", jobType: "direct.leaving", priority: 0, runAt: null }])) === undefined) {
    if (Date.now() > deadline) throw new Error("never idle");
    await new Promise((r) => setTimeout(r, 5));
  }
  t.same(plan.workerIds, ["w-leaving"]);
  await dispatcher.close(session, { clean: true, why: "test" });
  const newTask: NewTask = { namespace: "default", jobType: "direct.leaving", input: { typeUrl: "type.googleapis.com/google.protobuf.Value", value: jsonAny(1).value }, priority: 0, maxAttempts: 2, timeoutMs: null, runAt: null, backoffBaseMs: 0, backoffCapMs: 0 };
  const inserted = await taskInsertBatch(db, [newTask], plan.workerIds);
  const record = inserted.tasks[0]!;
  t.equal(record.state, "running");
  plan.deliver(new Map([[0, { taskId: record.id, namespace: "default", jobType: record.jobType, input: record.input, attempt: 1, maxAttempts: 2, leaseToken: inserted.leaseTokens[0]!, timeoutMs: null, createdAt: record.createdAt, leaseExpiresAt: record.leaseExpiresAt!, checkpoint: null, hasDependencies: false, parents: [] }]]));
  t.same(assigned, [], "nothing was sent to the closed session");
  const until = Date.now() + 5_000;
  for (;;) {
    const back = (await s.tasks.getTask({ id: record.id })).task!;
    if (back.state === TaskState.PENDING) {
      t.equal(back.maxAttempts, 3, "the released attempt does not count: one more is allowed");
      t.same(back.attempts.map((x) => x.outcome), [AttemptOutcome.RELEASED]);
      break;
    }
    if (Date.now() > until) throw new Error(`still ${TaskState[back.state]}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  t.equal(claimed, 0);
});

t.test("a task with dependencies is never handed off directly: queued, then assigned with its parents' outputs", async (t) => {
  await s.jobTypes.registerJobType({ name: "direct.parent" });
  await s.jobTypes.registerJobType({ name: "direct.child" });
  const parent = (await s.tasks.submit({ task: { jobType: "direct.parent", input: jsonAny(1) } })).task!;
  const [p] = (await s.workers.claimTasks({ workerId: "w-parent", jobTypes: ["direct.parent"], maxTasks: 1 })).assignments;
  await s.workers.completeTask({ completion: { taskId: p!.taskId, attempt: p!.attempt, leaseToken: p!.leaseToken, output: jsonAny("made") } });
  const w = await idleWorker(t, "direct.child", 2, "w-child");
  const child = (await s.tasks.submit({ task: { jobType: "direct.child", input: jsonAny(2), dependsOn: [parent.id] } })).task!;
  t.equal(child.state, TaskState.PENDING, "queued PENDING (its parent already succeeded), not inserted RUNNING");
  const { assignments } = await w.next("assignments");
  t.equal(assignments[0]!.taskId, child.id);
  t.same(assignments[0]!.parents.map((x) => x.taskId), [parent.id], "claimed with its parent's output");
  t.same((await events(child.id)).map((e) => [e.kind, e.state]), [["created", "pending"], ["state_changed", "running"]]);
});
