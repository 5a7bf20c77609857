/** Leases, heartbeats, timeouts, the sweeper, reconnects, drain, retry, checkpoints and progress. */
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import t from "tap";
import { rejection } from "../helpers/rejection.js";
import { AttemptOutcome, CheckpointSchema, TaskState } from "../../src/gen/taskwire/v1/task_pb.js";
import { LeaseSchema, RevokeReason, type Assignment } from "../../src/gen/taskwire/v1/worker_pb.js";
import { heartbeatFor, openClaimStream, type ClaimStream } from "../helpers/claim-stream.js";
import { anyJson, jsonAny } from "../helpers/payload.js";
import { startTestServer } from "../helpers/server.js";

const s = await startTestServer(t, { sweepIntervalMs: 100, progressFlushMs: 50, safetyPollMs: 300 });
const db = s.server.engine.database.db;
const get = async (id: string) => (await s.tasks.getTask({ id })).task!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until `check` holds (bounded), returning the last task read. */
async function until(id: string, check: (task: Awaited<ReturnType<typeof get>>) => boolean, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const task = await get(id);
    if (check(task)) return task;
    if (Date.now() > deadline) throw new Error(`task ${id} did not reach the expected state; it is ${TaskState[task.state]}`);
    await sleep(25);
  }
}

const complete = (w: ClaimStream, a: Assignment, output: unknown = "ok") =>
  w.send({ case: "complete", value: { $typeName: "taskwire.v1.TaskCompletion", taskId: a.taskId, attempt: a.attempt, leaseToken: a.leaseToken, output: jsonAny(output as never) } });

/** Registers a job type with a 1 s lease and immediate retries (one per test, so tests never see each other's tasks). */
const leased = async (name: string) => {
  await s.jobTypes.registerJobType({ name, leaseDuration: durationFromMs(1_000), defaultMaxAttempts: 3, defaultRetry: { backoffBase: durationFromMs(0), backoffCap: durationFromMs(0) } });
  return name;
};

t.test("heartbeats keep a lease; without them the task is taken back within the lease and the worker is told", async (t) => {
  const jobType = await leased("leased.beat");
  const worker = openClaimStream(s.workers, { workerId: "w-beat", jobTypes: [jobType], credits: 1 });
  const welcome = await worker.next("welcome");
  t.ok(welcome.heartbeatInterval, "the server says how often to heartbeat");
  const task = (await s.tasks.submit({ task: { jobType, input: jsonAny(1) } })).task!;
  const [a] = (await worker.next("assignments")).assignments;
  t.ok(a!.leaseExpiresAt, "assignments carry the lease deadline");
  await heartbeatFor(worker, 2_400);
  const held = await get(task.id);
  t.equal(held.state, TaskState.RUNNING, "2.4 s of heartbeats kept a 1 s lease");
  t.equal(held.attempt, 1);
  const stoppedAt = Date.now();
  const revoked = await worker.next("revoked", 5_000);
  t.equal(revoked.reason, RevokeReason.LEASE_LOST);
  t.ok(Date.now() - stoppedAt < 2_000, `taken back ${Date.now() - stoppedAt} ms after the last heartbeat (lease 1 s)`);
  const lost = await get(task.id);
  t.not(lost.state, TaskState.SUCCEEDED, "back in the queue (or already re-delivered)");
  t.same([lost.attempts[0]!.outcome, lost.attempts[0]!.number], [AttemptOutcome.LOST, 1]);
  t.match(lost.attempts[0]!.error, /attempt 1 lost: worker w-beat sent no heartbeat within the lease/);
  complete(worker, a!, "too late");
  const late = await worker.next("reportResult");
  t.equal(late.accepted, false, "its late completion is rejected");
  // Its credit came back, so the task is delivered again, as attempt 2.
  const [again] = (await worker.next("assignments")).assignments;
  t.same([again?.taskId, again?.attempt], [task.id, 2]);
  complete(worker, again!, "second");
  t.equal((await worker.next("reportResult")).accepted, true);
  await worker.close();
});

t.test("a timeout is enforced by the server: the worker is told, the attempt times out, retries apply, the late result is rejected", async (t) => {
  await s.jobTypes.registerJobType({ name: "timed", defaultTimeout: durationFromMs(300), defaultMaxAttempts: 2, defaultRetry: { backoffBase: durationFromMs(0), backoffCap: durationFromMs(0) } });
  const worker = openClaimStream(s.workers, { workerId: "w-timeout", jobTypes: ["timed"], credits: 1 });
  const task = (await s.tasks.submit({ task: { jobType: "timed", input: jsonAny(1) } })).task!;
  const [a1] = (await worker.next("assignments")).assignments;
  const revoked = await worker.next("revoked", 5_000);
  t.same([revoked.taskId, revoked.attempt, revoked.reason], [task.id, 1, RevokeReason.TIMED_OUT]);
  t.match(revoked.message, /attempt 1 timed out after 300 ms/);
  complete(worker, a1!, "late");
  t.equal((await worker.next("reportResult")).accepted, false, "the late result is rejected");
  // Retry policy applies: attempt 2 comes to the same worker (its credit came back), and times out too.
  const [a2] = (await worker.next("assignments")).assignments;
  t.same([a2!.taskId, a2!.attempt], [task.id, 2]);
  await worker.next("revoked", 5_000);
  const dead = await until(task.id, (x) => x.state === TaskState.DEAD);
  t.same(dead.attempts.map((x) => x.outcome), [AttemptOutcome.TIMED_OUT, AttemptOutcome.TIMED_OUT]);
  await worker.close();
});

t.test("a broken stream keeps its leases; the reconnected worker adopts them and its result counts", async (t) => {
  const jobType = await leased("leased.reconnect");
  const first = openClaimStream(s.workers, { workerId: "w-reconnect", jobTypes: [jobType], credits: 2 });
  const task = (await s.tasks.submit({ task: { jobType, input: jsonAny(1) } })).task!;
  const [a] = (await first.next("assignments")).assignments;
  first.abort();
  await sleep(100);
  t.equal((await get(task.id)).state, TaskState.RUNNING, "still leased after the stream broke");
  const stale = create(LeaseSchema, { taskId: task.id, attempt: 1, leaseToken: "00000000-0000-4000-8000-000000000000" });
  const second = openClaimStream(s.workers, {
    workerId: "w-reconnect",
    jobTypes: [jobType],
    credits: 2,
    held: [create(LeaseSchema, { taskId: a!.taskId, attempt: a!.attempt, leaseToken: a!.leaseToken }), { ...stale, taskId: "999999" }],
  });
  const welcome = await second.next("welcome");
  t.same(welcome.adopted.map((l) => l.taskId), [task.id], "the current lease was adopted");
  const revoked = await second.next("revoked");
  t.same([revoked.taskId, revoked.reason], ["999999", RevokeReason.LEASE_LOST], "a lease that is not current is revoked");
  await heartbeatFor(second, 1_400); // past the 1 s lease
  complete(second, a!, "after reconnect");
  t.equal((await second.next("reportResult")).accepted, true);
  const done = await get(task.id);
  t.equal(done.state, TaskState.SUCCEEDED);
  t.equal(done.attempts.length, 1, "no second attempt was needed");
  await second.close();
});

t.test("drain: no new tasks; a released task goes back to PENDING without burning an attempt", async (t) => {
  await s.jobTypes.registerJobType({ name: "drained", defaultMaxAttempts: 1 });
  const worker = openClaimStream(s.workers, { workerId: "w-drain", jobTypes: ["drained"], credits: 5 });
  const task = (await s.tasks.submit({ task: { jobType: "drained", input: jsonAny(1) } })).task!;
  const [a] = (await worker.next("assignments")).assignments;
  worker.send({ case: "drain", value: { $typeName: "taskwire.v1.WorkerDrain" } });
  await sleep(50);
  const other = (await s.tasks.submit({ task: { jobType: "drained", input: jsonAny(2) } })).task!;
  worker.send({ case: "release", value: { $typeName: "taskwire.v1.TaskRelease", taskId: a!.taskId, attempt: 1, leaseToken: a!.leaseToken, reason: "worker draining" } });
  const answer = await worker.next("reportResult");
  t.same([answer.accepted, answer.kind], [true, 4 /* RELEASE */]);
  await sleep(300);
  t.same(worker.taken("assignments"), [], "a draining worker gets nothing new");
  const released = await get(task.id);
  t.equal(released.state, TaskState.PENDING);
  t.same([released.attempts[0]!.outcome, released.attempts[0]!.error], [AttemptOutcome.RELEASED, "worker draining"]);
  t.equal(released.maxAttempts, 2, "the released attempt does not count: max_attempts 1 still leaves a real attempt");
  await worker.close();
  const claimed = (await s.workers.claimTasks({ workerId: "w-fresh", jobTypes: ["drained"], maxTasks: 2 })).assignments;
  t.same(new Set(claimed.map((x) => x.taskId)), new Set([task.id, other.id]));
  const again = claimed.find((x) => x.taskId === task.id)!;
  t.equal(again.attempt, 2);
  await s.workers.failTask({ failure: { taskId: task.id, attempt: 2, leaseToken: again.leaseToken, error: "real failure" } });
  t.equal((await get(task.id)).state, TaskState.DEAD, "the one real attempt was used up");
  const o = claimed.find((x) => x.taskId === other.id)!;
  await s.workers.completeTask({ completion: { taskId: o.taskId, attempt: o.attempt, leaseToken: o.leaseToken } });
});

t.test("backoff: the retry delay follows the policy (base 200 ms, cap 200 ms -> 100..200 ms)", async (t) => {
  await s.jobTypes.registerJobType({ name: "backoff", defaultMaxAttempts: 5, defaultRetry: { backoffBase: durationFromMs(200), backoffCap: durationFromMs(200) } });
  const delays: number[] = [];
  for (let i = 0; i < 5; i++) {
    const task = (await s.tasks.submit({ task: { jobType: "backoff", input: jsonAny(i) } })).task!;
    const [a] = (await s.workers.claimTasks({ workerId: "w-backoff", jobTypes: ["backoff"], maxTasks: 1 })).assignments;
    await s.workers.failTask({ failure: { taskId: task.id, attempt: 1, leaseToken: a!.leaseToken, error: "again" } });
    const [row] = await db.query<{ delay: number }>("SELECT (extract(epoch FROM run_at - updated_at) * 1000)::float8 AS delay FROM task WHERE id = $1", [task.id]);
    delays.push(row!.delay);
    await s.tasks.cancel({ id: task.id });
  }
  t.ok(delays.every((d) => d >= 100 && d <= 200.5), `delays ${delays.map((d) => Math.round(d)).join(", ")} ms are within [100, 200]`);
  // A task may override the policy: zero retries at once.
  const now = (await s.tasks.submit({ task: { jobType: "backoff", input: jsonAny(0), retry: { backoffBase: durationFromMs(0), backoffCap: durationFromMs(0) } } })).task!;
  t.same([now.retry?.backoffBase?.seconds, now.retry?.backoffBase?.nanos], [0n, 0], "0 is a value, not the default");
  const [a] = (await s.workers.claimTasks({ workerId: "w-backoff", jobTypes: ["backoff"], maxTasks: 1 })).assignments;
  await s.workers.failTask({ failure: { taskId: now.id, attempt: 1, leaseToken: a!.leaseToken, error: "again" } });
  const [row] = await db.query<{ delay: number }>("SELECT (extract(epoch FROM run_at - updated_at) * 1000)::float8 AS delay FROM task WHERE id = $1", [now.id]);
  t.equal(row!.delay, 0);
  await s.tasks.cancel({ id: now.id });
});

t.test("Retry brings a DEAD task back with its history, and it can succeed; other states are refused", async (t) => {
  await s.jobTypes.registerJobType({ name: "retried", defaultMaxAttempts: 1 });
  const task = (await s.tasks.submit({ task: { jobType: "retried", input: jsonAny(1) } })).task!;
  const [a1] = (await s.workers.claimTasks({ workerId: "w-retry", jobTypes: ["retried"], maxTasks: 1 })).assignments;
  await s.workers.failTask({ failure: { taskId: task.id, attempt: 1, leaseToken: a1!.leaseToken, error: "first run failed" } });
  t.equal((await get(task.id)).state, TaskState.DEAD);
  const { task: requeued } = await s.tasks.retry({ id: task.id });
  t.same([requeued!.state, requeued!.maxAttempts, requeued!.finishedAt], [TaskState.PENDING, 2, undefined]);
  const [a2] = (await s.workers.claimTasks({ workerId: "w-retry", jobTypes: ["retried"], maxTasks: 1 })).assignments;
  t.same([a2!.taskId, a2!.attempt], [task.id, 2]);
  // The old attempt's reports arriving now change nothing.
  t.equal((await rejection(() => s.workers.completeTask({ completion: { taskId: task.id, attempt: 1, leaseToken: a1!.leaseToken } }))).code, Code.FailedPrecondition);
  t.equal((await rejection(() => s.workers.failTask({ failure: { taskId: task.id, attempt: 1, leaseToken: a1!.leaseToken, error: "old" } }))).code, Code.FailedPrecondition);
  await s.workers.completeTask({ completion: { taskId: task.id, attempt: 2, leaseToken: a2!.leaseToken, output: jsonAny("second run") } });
  const done = await get(task.id);
  t.equal(done.state, TaskState.SUCCEEDED);
  t.same(done.attempts.map((x) => [x.number, x.outcome]), [[1, AttemptOutcome.FAILED], [2, AttemptOutcome.SUCCEEDED]]);
  const refused = await rejection(() => s.tasks.retry({ id: task.id }));
  t.equal(refused.code, Code.FailedPrecondition);
  t.match(refused.message, /cannot retry a task that is SUCCEEDED; allowed only from DEAD, CANCELLED/);
  t.equal((await rejection(() => s.tasks.retry({ id: "987654" }))).code, Code.NotFound);
  t.equal((await rejection(() => s.tasks.retry({ id: task.id, additionalAttempts: 0 }))).code, Code.InvalidArgument);
});

t.test("checkpoints are durable and handed to the next attempt; progress is coalesced and the latest value arrives", async (t) => {
  await s.jobTypes.registerJobType({ name: "resumable", defaultMaxAttempts: 3, defaultRetry: { backoffBase: durationFromMs(0), backoffCap: durationFromMs(0) } });
  const worker = openClaimStream(s.workers, { workerId: "w-checkpoint", jobTypes: ["resumable"], credits: 1 });
  const task = (await s.tasks.submit({ task: { jobType: "resumable", input: jsonAny(1) } })).task!;
  const [a1] = (await worker.next("assignments")).assignments;
  t.equal(a1!.checkpoint, undefined, "the first attempt starts from nothing");
  const checkpoint = create(CheckpointSchema, { data: { case: "json", value: { kind: { case: "numberValue", value: 42 }, $typeName: "google.protobuf.Value" } } });
  worker.send({ case: "checkpoint", value: { $typeName: "taskwire.v1.TaskCheckpoint", taskId: task.id, attempt: 1, leaseToken: a1!.leaseToken, checkpoint } });
  const saved = await worker.next("reportResult");
  t.same([saved.accepted, saved.kind], [true, 3 /* CHECKPOINT */]);
  for (let i = 1; i <= 1_000; i++) {
    worker.send({ case: "progress", value: { $typeName: "taskwire.v1.TaskProgress", taskId: task.id, attempt: 1, leaseToken: a1!.leaseToken, fraction: i / 2_000, message: `step ${i}` } });
  }
  const progressed = await until(task.id, (x) => x.progressMessage === "step 1000", 5_000);
  t.equal(progressed.progress, 0.5, "the last value arrived");
  worker.send({ case: "fail", value: { $typeName: "taskwire.v1.TaskFailure", taskId: task.id, attempt: 1, leaseToken: a1!.leaseToken, error: "crash after checkpoint", nonRetryable: false } });
  await worker.next("reportResult");
  const [a2] = (await worker.next("assignments")).assignments;
  t.equal(a2!.attempt, 2);
  t.equal(a2!.checkpoint?.data.case, "json");
  t.same(a2!.checkpoint?.data.value, checkpoint.data.value, "attempt 2 resumes from attempt 1's checkpoint");
  const shown = await get(task.id);
  t.equal(shown.checkpoint?.data.case, "json", "GetTask shows the checkpoint");
  // A checkpoint from the old attempt is refused.
  worker.send({ case: "checkpoint", value: { $typeName: "taskwire.v1.TaskCheckpoint", taskId: task.id, attempt: 1, leaseToken: a1!.leaseToken, checkpoint } });
  t.equal((await worker.next("reportResult")).accepted, false);
  complete(worker, a2!, "resumed");
  t.equal((await worker.next("reportResult")).accepted, true);
  t.equal(anyJson((await get(task.id)).output), "resumed");
  await worker.close();
});

t.test("progress sent right before the outcome is written before it, not dropped", async (t) => {
  await s.jobTypes.registerJobType({ name: "last.words", defaultMaxAttempts: 1 });
  const worker = openClaimStream(s.workers, { workerId: "w-last", jobTypes: ["last.words"], credits: 1 });
  const task = (await s.tasks.submit({ task: { jobType: "last.words", input: jsonAny(1) } })).task!;
  const [a] = (await worker.next("assignments")).assignments;
  worker.send({ case: "progress", value: { $typeName: "taskwire.v1.TaskProgress", taskId: task.id, attempt: 1, leaseToken: a!.leaseToken, fraction: 0.75, message: "last words" } });
  worker.send({ case: "fail", value: { $typeName: "taskwire.v1.TaskFailure", taskId: task.id, attempt: 1, leaseToken: a!.leaseToken, error: "gave up", nonRetryable: true } });
  t.equal((await worker.next("reportResult")).accepted, true);
  const dead = await get(task.id);
  t.same([dead.state, dead.progress, dead.progressMessage], [TaskState.DEAD, 0.75, "last words"]);
  worker.send({ case: "drain", value: { $typeName: "taskwire.v1.WorkerDrain" } });
  await worker.close();
});

t.test("unary ReportProgress and SaveCheckpoint answer at once: written for the current lease, FAILED_PRECONDITION for a stale one, NOT_FOUND for no such task; Heartbeat leaves both out", async (t) => {
  await s.jobTypes.registerJobType({ name: "unary.progress", defaultMaxAttempts: 2, defaultRetry: { backoffBase: durationFromMs(0), backoffCap: durationFromMs(0) } });
  const task = (await s.tasks.submit({ task: { jobType: "unary.progress", input: jsonAny(1) } })).task!;
  const [first] = (await s.workers.claimTasks({ workerId: "w-unary", jobTypes: ["unary.progress"], maxTasks: 1 })).assignments;
  const lease = (a: Assignment) => ({ taskId: a.taskId, attempt: a.attempt, leaseToken: a.leaseToken });
  const checkpoint = create(CheckpointSchema, { data: { case: "binary", value: new Uint8Array([7]) } });
  await s.workers.reportProgress({ progress: { ...lease(first!), fraction: 0.25, message: "a quarter" } });
  const shown = await get(task.id);
  t.same([shown.progress, shown.progressMessage], [0.25, "a quarter"], "written before the answer (no flush needed)");
  await s.workers.saveCheckpoint({ checkpoint: { ...lease(first!), checkpoint } });

  await s.workers.failTask({ failure: { ...lease(first!), error: "again", nonRetryable: false } });
  const [second] = (await s.workers.claimTasks({ workerId: "w-unary", jobTypes: ["unary.progress"], maxTasks: 1 })).assignments;
  t.equal(second?.attempt, 2);
  const stale = await rejection(() => s.workers.reportProgress({ progress: { ...lease(first!), fraction: 0.9, message: "late" } }));
  t.equal(Code[stale.code], "FailedPrecondition", "progress of attempt 1 while attempt 2 runs");
  t.match(stale.rawMessage, /attempt 2 is the current one/);
  const staleCheckpoint = await rejection(() => s.workers.saveCheckpoint({ checkpoint: { ...lease(first!), checkpoint } }));
  t.equal(Code[staleCheckpoint.code], "FailedPrecondition");
  const wrongToken = await rejection(() => s.workers.reportProgress({ progress: { ...lease(second!), leaseToken: first!.leaseToken, fraction: 0.9, message: "x" } }));
  t.equal(Code[wrongToken.code], "FailedPrecondition", "a token that is not the attempt's");
  const unknown = { taskId: "999999999", attempt: 1, leaseToken: first!.leaseToken };
  t.equal(Code[(await rejection(() => s.workers.reportProgress({ progress: { ...unknown, fraction: 0.1, message: "" } }))).code], "NotFound");
  t.equal(Code[(await rejection(() => s.workers.saveCheckpoint({ checkpoint: { ...unknown, checkpoint } }))).code], "NotFound");
  const after = await get(task.id);
  t.same([after.progress, after.progressMessage], [0, ""], "nothing of the refused reports was written (a new attempt starts at 0)");

  const beat = await s.workers.heartbeat({ workerId: "w-unary", leases: [lease(first!), lease(second!), unknown] });
  t.same(beat.held.map((l) => [l.taskId, l.attempt]), [[task.id, 2]], "Heartbeat: only the lease still held, the others left out without an error");
  await s.workers.completeTask({ completion: { ...lease(second!), output: jsonAny("done") } });
});

t.test("ListWorkers shows connected workers with job types, credits, tasks in flight and last heartbeat", async (t) => {
  await s.jobTypes.registerJobType({ name: "listed" });
  const other = await leased("leased.listed");
  const worker = openClaimStream(s.workers, { workerId: "w-listed", jobTypes: ["listed", other], credits: 7 });
  await worker.next("welcome");
  await s.tasks.submitBatch({ tasks: [{ jobType: "listed", input: jsonAny(1) }, { jobType: "listed", input: jsonAny(2) }] });
  await worker.next("assignments");
  worker.send({ case: "heartbeat", value: { $typeName: "taskwire.v1.WorkerHeartbeat" } });
  await sleep(100);
  const listed = (await s.workers.listWorkers({})).workers.find((w) => w.workerId === "w-listed");
  t.ok(listed, "listed while connected");
  t.same([listed!.jobTypes, listed!.credits, listed!.connected], [["listed", other], 7, true]);
  t.ok(listed!.tasksInFlight >= 1, `${listed!.tasksInFlight} task(s) in flight`);
  t.ok(Date.now() - timestampDate(listed!.lastHeartbeatAt!).getTime() < 5_000, "recent heartbeat");
  await worker.close();
  t.notOk((await s.workers.listWorkers({})).workers.some((w) => w.workerId === "w-listed"), "gone once disconnected");
  const all = (await s.workers.listWorkers({ includeDisconnected: true })).workers.find((w) => w.workerId === "w-listed");
  t.equal(all?.connected, false);
});
