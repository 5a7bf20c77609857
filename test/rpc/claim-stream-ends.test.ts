/**
 * How a Claim stream's end is judged. Only the worker's own clean end (drain, then closing its
 * side) gives up the leases it holds at once; when the server ends the stream, or the stream
 * breaks, the worker keeps them and can adopt them on its next stream. And once a stream is gone,
 * nothing more is assigned to it, even while its last reports are still being written.
 */
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import pg from "pg";
import t from "tap";
import { AttemptOutcome, TaskState } from "../../src/gen/taskwire/v1/task_pb.js";
import { LeaseSchema } from "../../src/gen/taskwire/v1/worker_pb.js";
import { openClaimStream } from "../helpers/claim-stream.js";
import { jsonAny } from "../helpers/payload.js";
import { startTestServer } from "../helpers/server.js";

// Streams end after 1.5 s (--max-stream-ms): the server's own end of a stream.
const s = await startTestServer(t, { sweepIntervalMs: 100, limits: { maxStreamMs: 1_500 } });
const get = async (id: string) => (await s.tasks.getTask({ id })).task!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const drainMessage = { case: "drain", value: { $typeName: "taskwire.v1.WorkerDrain" } } as const;

/** A job type whose leases outlast each test (so only the stream's end can take them). */
const longLeased = async (name: string) => {
  await s.jobTypes.registerJobType({ name, leaseDuration: durationFromMs(60_000), defaultMaxAttempts: 1 });
  return name;
};

/** A worker's stream holding one task of a new long-leased job type. */
async function holdingOne(jobTypeName: string, workerId: string) {
  const jobType = await longLeased(jobTypeName);
  const worker = openClaimStream(s.workers, { workerId, jobTypes: [jobType], credits: 1 });
  await worker.next("welcome");
  const task = (await s.tasks.submit({ task: { jobType, input: jsonAny(1) } })).task!;
  const [assignment] = (await worker.next("assignments")).assignments;
  return { jobType, worker, task, a: assignment!, lease: create(LeaseSchema, { taskId: assignment!.taskId, attempt: assignment!.attempt, leaseToken: assignment!.leaseToken }) };
}

t.test("drain, then the server ends the stream: the worker keeps its lease and adopts it on reconnect", async (t) => {
  const { jobType, worker, task, lease } = await holdingOne("ends.server", "w-server-end");
  worker.send(drainMessage);
  // The server ends the stream at its maximum duration; the worker never closed its side.
  const ended = await worker.next("welcome", 5_000).then(() => "a second welcome?", (error: Error) => error.message);
  t.match(ended, /stream ended/, "the server ended the stream");
  await sleep(300); // the session's close has run
  const held = await get(task.id);
  t.same([held.state, held.attempt], [TaskState.RUNNING, 1], "the task is still the worker's, not lost");
  const again = openClaimStream(s.workers, { workerId: "w-server-end", jobTypes: [jobType], credits: 1, held: [lease] });
  t.same((await again.next("welcome")).adopted.map((l) => l.taskId), [task.id], "and its next stream adopts it");
  await again.close();
});

t.test("drain, then the worker closes its side: what it still holds goes back at once, its attempt not counted", async (t) => {
  // E.g. a task assigned just before the server read the drain, which reached the worker only
  // after it had closed its side, too late to release it.
  const { worker, task } = await holdingOne("ends.clean", "w-clean");
  worker.send(drainMessage);
  await worker.close();
  const back = await get(task.id);
  // max_attempts 1: a counted attempt would have made it DEAD; not counted, max_attempts grows by one.
  t.same([TaskState[back.state], back.maxAttempts], ["PENDING", 2], "PENDING at once, without waiting for the 60 s lease");
  t.same([AttemptOutcome[back.attempts[0]!.outcome], back.attempts[0]!.error], ["RELEASED", "worker w-clean left: it closed its stream while holding the task"]);
});

t.test("a stream that broke while its last report was being written is assigned nothing more", async (t) => {
  const { jobType, worker, task: first, a } = await holdingOne("ends.broken", "w-broken");
  // Hold the first task's row, so the completion's write waits while the stream goes away.
  const locker = new pg.Client({ connectionString: s.databaseUrl });
  await locker.connect();
  t.teardown(() => locker.end());
  await locker.query("BEGIN");
  await locker.query("SELECT id FROM task WHERE id = $1 FOR UPDATE", [first.id]);
  worker.send({ case: "complete", value: { $typeName: "taskwire.v1.TaskCompletion", taskId: a.taskId, attempt: a.attempt, leaseToken: a.leaseToken, output: jsonAny("done") } });
  await sleep(200); // the completion frees the credit and waits for the row
  worker.abort();
  await sleep(200);
  // A task submitted now must not go to the gone worker, whose session waits for that write.
  const second = (await s.tasks.submit({ task: { jobType, input: jsonAny(2) } })).task!;
  await sleep(500);
  await locker.query("COMMIT");
  for (let i = 0; i < 100 && (await get(first.id)).state !== TaskState.SUCCEEDED; i++) await sleep(20);
  t.equal((await get(first.id)).state, TaskState.SUCCEEDED, "the report received before the break was written");
  await sleep(300);
  const after = await get(second.id);
  t.same([after.state, after.attempts.filter((x) => x.workerId === "w-broken").length], [TaskState.PENDING, 0], "the later task is still PENDING, never leased to the gone worker");
});

t.test("a lease adopted by the worker's new stream stays with it when the old stream then ends cleanly", async (t) => {
  const { jobType, worker: old, task, a, lease } = await holdingOne("ends.adopted", "w-adopt");
  old.send(drainMessage);
  const fresh = openClaimStream(s.workers, { workerId: "w-adopt", jobTypes: [jobType], credits: 1, held: [lease] });
  t.same((await fresh.next("welcome")).adopted.map((l) => l.taskId), [task.id], "the new stream adopted the lease");
  await old.close(); // a clean end of the old stream
  await sleep(200);
  const held = await get(task.id);
  t.same([held.state, held.attempt], [TaskState.RUNNING, 1], "the task is still running, on the new stream");
  fresh.send({ case: "complete", value: { $typeName: "taskwire.v1.TaskCompletion", taskId: a.taskId, attempt: a.attempt, leaseToken: a.leaseToken, output: jsonAny("done") } });
  t.equal((await fresh.next("reportResult")).accepted, true, "and the new stream completes it");
  await fresh.close();
});

t.test("a completion whose output the job type refuses fails the attempt, freeing the lease and the worker's credit", async (t) => {
  const jobType = "ends.refused";
  await s.jobTypes.registerJobType({ name: jobType, leaseDuration: durationFromMs(60_000), defaultMaxAttempts: 2, maxPayloadBytes: 100 });
  const worker = openClaimStream(s.workers, { workerId: "w-refused", jobTypes: [jobType], credits: 1 });
  await worker.next("welcome");
  const task = (await s.tasks.submit({ task: { jobType, input: jsonAny(1) } })).task!;
  const [a] = (await worker.next("assignments")).assignments;
  worker.send({ case: "complete", value: { $typeName: "taskwire.v1.TaskCompletion", taskId: a!.taskId, attempt: a!.attempt, leaseToken: a!.leaseToken, output: jsonAny("x".repeat(500)) } });
  const answer = await worker.next("reportResult");
  t.equal(answer.accepted, false);
  t.match(answer.error, /completion\.output: is \d+ bytes; the limit is 100 bytes .*; the attempt was recorded as failed$/);
  const failed = await get(task.id);
  t.same([AttemptOutcome[failed.attempts[0]!.outcome], failed.state !== TaskState.RUNNING], ["FAILED", true], "the attempt failed; the task is not left RUNNING");
  t.match(failed.attempts[0]!.error, /^the output was refused: completion\.output: is \d+ bytes/);
  // The credit came back: the retry (or another task) is assigned to the same one-credit stream.
  const [next] = (await worker.next("assignments", 5_000)).assignments;
  t.same([next!.taskId, next!.attempt], [task.id, 2], "the retry reaches the worker, whose credit was freed");
  await worker.close();

  // The unary call: refused saying so, and the attempt failed too.
  const unary = (await s.tasks.submit({ task: { jobType, input: jsonAny(2) } })).task!;
  const [u] = (await s.workers.claimTasks({ workerId: "w-refused-unary", jobTypes: [jobType], maxTasks: 1 })).assignments;
  t.equal(u!.taskId, unary.id);
  const error = await s.workers.completeTask({ completion: { taskId: u!.taskId, attempt: u!.attempt, leaseToken: u!.leaseToken, output: jsonAny("y".repeat(500)) } }).then(() => undefined, (e: unknown) => e as Error);
  t.match(error?.message, /resource_exhausted.*the limit is 100 bytes.*; the attempt was recorded as failed/i, "RESOURCE_EXHAUSTED, as for any payload over its limit");
  t.equal(AttemptOutcome[(await get(unary.id)).attempts[0]!.outcome], "FAILED");
});
