/** The task lifecycle over the real server: claims, reports, cancel, delays, failures, lost workers. */
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import t from "tap";
import { rejection } from "../helpers/rejection.js";
import { AttemptOutcome, TaskSpecSchema, TaskState, type TaskSpec } from "../../src/gen/taskwire/v1/task_pb.js";
import { openClaimStream } from "../helpers/claim-stream.js";
import { anyJson, jsonAny } from "../helpers/payload.js";
import { startTestServer } from "../helpers/server.js";

const s = await startTestServer(t, { safetyPollMs: 500 });
await s.jobTypes.registerJobType({ name: "work", defaultMaxAttempts: 2 });

const submit = async (fields: Partial<Omit<TaskSpec, "$typeName">> = {}) =>
  (await s.tasks.submit({ task: create(TaskSpecSchema, { jobType: "work", input: jsonAny({ n: 1 }), ...fields }) })).task!;
const get = async (id: string) => (await s.tasks.getTask({ id })).task!;

t.test("claim over the stream, complete, and the history shows one attempt", async (t) => {
  const task = await submit();
  const worker = openClaimStream(s.workers, { workerId: "w-complete", jobTypes: ["work"], credits: 4 });
  t.equal((await worker.next("welcome")).workerId, "w-complete");
  const { assignments } = await worker.next("assignments");
  const a = assignments.find((x) => x.taskId === task.id)!;
  t.equal(a.attempt, 1, "attempts count from 1");
  t.same(anyJson(a.input), { n: 1 });
  worker.send({ case: "complete", value: { $typeName: "taskwire.v1.TaskCompletion", taskId: a.taskId, attempt: a.attempt, leaseToken: a.leaseToken, output: jsonAny("done") } });
  const result = await worker.next("reportResult");
  t.same([result.taskId, result.accepted, result.error], [task.id, true, ""]);
  const done = await get(task.id);
  t.equal(done.state, TaskState.SUCCEEDED);
  t.equal(anyJson(done.output), "done");
  t.ok(done.finishedAt, "finished_at set");
  t.equal(done.attempts.length, 1);
  t.same([done.attempts[0]!.number, done.attempts[0]!.workerId, done.attempts[0]!.outcome], [1, "w-complete", AttemptOutcome.SUCCEEDED]);
  // A replayed completion is rejected and changes nothing.
  worker.send({ case: "complete", value: { $typeName: "taskwire.v1.TaskCompletion", taskId: a.taskId, attempt: a.attempt, leaseToken: a.leaseToken, output: jsonAny("again") } });
  const replay = await worker.next("reportResult");
  t.equal(replay.accepted, false);
  t.match(replay.error, /the task is SUCCEEDED/);
  t.equal(anyJson((await get(task.id)).output), "done");
  await worker.close();
});

t.test("cancel of a pending task is immediate; cancelling again is an illegal transition", async (t) => {
  const task = await submit({ runAt: timestampFromMs(Date.now() + 60_000) });
  const { task: cancelled } = await s.tasks.cancel({ id: task.id, reason: "not needed" });
  t.equal(cancelled!.state, TaskState.CANCELLED);
  t.equal(cancelled!.lastError, "not needed");
  t.ok(cancelled!.finishedAt);
  const again = await rejection(() => s.tasks.cancel({ id: task.id }));
  t.equal(again.code, Code.FailedPrecondition);
  t.match(again.message, /cannot cancel a task that is CANCELLED; allowed only from WAITING, PENDING, RUNNING/);
});

t.test("cancel of a running task tells its worker, and the late result is rejected", async (t) => {
  const worker = openClaimStream(s.workers, { workerId: "w-cancel", jobTypes: ["work"], credits: 1 });
  await worker.next("welcome");
  const task = await submit();
  const { assignments } = await worker.next("assignments");
  const a = assignments[0]!;
  t.equal(a.taskId, task.id);
  await s.tasks.cancel({ id: task.id, reason: "user asked" });
  const revoked = await worker.next("revoked");
  t.same([revoked.taskId, revoked.attempt, revoked.message], [task.id, 1, "user asked"]);
  worker.send({ case: "complete", value: { $typeName: "taskwire.v1.TaskCompletion", taskId: a.taskId, attempt: 1, leaseToken: a.leaseToken, output: jsonAny("late") } });
  const late = await worker.next("reportResult");
  t.equal(late.accepted, false);
  t.match(late.error, /the task is CANCELLED/);
  const after = await get(task.id);
  t.equal(after.state, TaskState.CANCELLED);
  t.equal(after.output, undefined);
  t.equal(after.attempts[0]!.outcome, AttemptOutcome.CANCELLED);
  // The unary path rejects it the same way.
  const unary = await rejection(() => s.workers.completeTask({ completion: { taskId: a.taskId, attempt: 1, leaseToken: a.leaseToken } }));
  t.equal(unary.code, Code.FailedPrecondition);
  // The revoked credit came back: the worker gets the next task.
  const next = await submit();
  t.equal((await worker.next("assignments")).assignments[0]!.taskId, next.id);
  await s.tasks.cancel({ id: next.id });
  await worker.close();
});

t.test("a delayed task is not claimed before run_at", async (t) => {
  await s.jobTypes.registerJobType({ name: "delayed" });
  const runAt = Date.now() + 1_500;
  const task = (await s.tasks.submit({ task: { jobType: "delayed", input: jsonAny(null), runAt: timestampFromMs(runAt) } })).task!;
  t.equal(timestampDate(task.runAt!).getTime(), runAt);
  t.same((await s.workers.claimTasks({ workerId: "w-early", jobTypes: ["delayed"], maxTasks: 10 })).assignments, [], "nothing ready yet");
  const worker = openClaimStream(s.workers, { workerId: "w-delay", jobTypes: ["delayed"], credits: 1 });
  const { assignments } = await worker.next("assignments", 10_000);
  t.equal(assignments[0]!.taskId, task.id);
  t.ok(Date.now() >= runAt, `assigned ${Date.now() - runAt} ms after run_at, never before`);
  worker.send({ case: "complete", value: { $typeName: "taskwire.v1.TaskCompletion", taskId: task.id, attempt: 1, leaseToken: assignments[0]!.leaseToken } });
  t.equal((await worker.next("reportResult")).accepted, true);
  await worker.close();
});

t.test("failures retry with backoff until attempts run out; non-retryable is dead at once", async (t) => {
  await s.jobTypes.registerJobType({ name: "flaky", defaultMaxAttempts: 2 });
  const task = (await s.tasks.submit({ task: { jobType: "flaky", input: jsonAny(1) } })).task!;
  const [a1] = (await s.workers.claimTasks({ workerId: "w-fail", jobTypes: ["flaky"], maxTasks: 1 })).assignments;
  const failedAt = Date.now();
  await s.workers.failTask({ failure: { taskId: task.id, attempt: 1, leaseToken: a1!.leaseToken, error: "boom" } });
  const retried = await get(task.id);
  t.equal(retried.state, TaskState.PENDING, "back to pending");
  // The default backoff waits at least 500 ms after the first failure (100 ms spared for the clocks).
  t.ok(timestampDate(retried.runAt!).getTime() >= failedAt + 400, "run_at pushed out by the backoff");
  t.same([retried.attempts[0]!.outcome, retried.attempts[0]!.error], [AttemptOutcome.FAILED, "boom"]);
  t.equal(retried.lastError, "boom");
  // An old attempt's report after the retry was scheduled changes nothing.
  const stale = await rejection(() => s.workers.failTask({ failure: { taskId: task.id, attempt: 1, leaseToken: a1!.leaseToken, error: "late" } }));
  t.equal(stale.code, Code.FailedPrecondition);

  const deadNow = (await s.tasks.submit({ task: { jobType: "flaky", input: jsonAny(2) } })).task!;
  const [b1] = (await s.workers.claimTasks({ workerId: "w-fail", jobTypes: ["flaky"], maxTasks: 1 })).assignments;
  t.equal(b1!.taskId, deadNow.id);
  await s.workers.failTask({ failure: { taskId: deadNow.id, attempt: 1, leaseToken: b1!.leaseToken, error: "bad input", nonRetryable: true } });
  const dead = await get(deadNow.id);
  t.equal(dead.state, TaskState.DEAD);
  t.ok(dead.finishedAt);
  t.equal(dead.attempts.length, 1);
});

t.test("max_attempts 1 with a failure ends DEAD (attempts exhausted)", async (t) => {
  const task = await submit({ maxAttempts: 1 });
  const worker = openClaimStream(s.workers, { workerId: "w-exhaust", jobTypes: ["work"], credits: 1 });
  const a = (await worker.next("assignments")).assignments.find((x) => x.taskId === task.id)!;
  worker.send({ case: "fail", value: { $typeName: "taskwire.v1.TaskFailure", taskId: a.taskId, attempt: 1, leaseToken: a.leaseToken, error: "nope", nonRetryable: false } });
  t.equal((await worker.next("reportResult")).accepted, true);
  t.equal((await get(task.id)).state, TaskState.DEAD);
  await worker.close();
});

t.test("a worker whose stream breaks loses its tasks within the lease: they return to PENDING as attempt 2", async (t) => {
  await s.jobTypes.registerJobType({ name: "fragile", defaultMaxAttempts: 3, leaseDuration: durationFromMs(1_000) });
  const task = (await s.tasks.submit({ task: { jobType: "fragile", input: jsonAny(1) } })).task!;
  const crashing = openClaimStream(s.workers, { workerId: "w-crash", jobTypes: ["fragile"], credits: 1 });
  t.equal((await crashing.next("assignments")).assignments[0]!.taskId, task.id);
  crashing.abort();
  for (let i = 0; i < 100 && (await get(task.id)).state === TaskState.RUNNING; i++) await new Promise((r) => setTimeout(r, 50));
  const lost = await get(task.id);
  t.equal(lost.state, TaskState.PENDING);
  t.equal(lost.attempts[0]!.outcome, AttemptOutcome.LOST);
  t.match(lost.attempts[0]!.error, /worker w-crash sent no heartbeat within the lease/);
  await s.server.engine.database.db.query("UPDATE task SET run_at = now() WHERE id = $1", [task.id]); // skip the backoff
  const [again] = (await s.workers.claimTasks({ workerId: "w-next", jobTypes: ["fragile"], maxTasks: 1 })).assignments;
  t.same([again!.taskId, again!.attempt], [task.id, 2]);
});

t.test("a stream must start with hello", async (t) => {
  const stream = s.workers.claim(
    (async function* () {
      yield { message: { case: "complete" as const, value: { $typeName: "taskwire.v1.TaskCompletion" as const, taskId: "1", attempt: 1, leaseToken: "", output: undefined } } };
    })(),
  );
  const error = await rejection(async () => {
    for await (const _ of stream) void _;
  });
  t.equal(error.code, Code.InvalidArgument);
  t.match(error.message, /first message of a Claim stream must be hello/);
});
