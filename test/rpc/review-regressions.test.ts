/** Regressions found in review: each of these once lost a lease, a result, an attempt or answered INTERNAL. */
import net from "node:net";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import t from "tap";
import { rejection } from "../helpers/rejection.js";
import { TaskState } from "../../src/gen/taskwire/v1/task_pb.js";
import { encodePageToken, filterFingerprint } from "../../src/core/page-token.js";
import { heartbeatFor, openClaimStream } from "../helpers/claim-stream.js";
import { jsonAny } from "../helpers/payload.js";
import { startTestServer } from "../helpers/server.js";

const s = await startTestServer(t, { safetyPollMs: 200 });
const get = async (id: string) => (await s.tasks.getTask({ id })).task!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test("a rejected report naming another lease does not free the holder's credit", async (t) => {
  await s.jobTypes.registerJobType({ name: "r.credit", leaseDuration: durationFromMs(1_000) });
  const worker = openClaimStream(s.workers, { workerId: "w-credit", jobTypes: ["r.credit"], credits: 1 });
  const [t1, t2] = (await s.tasks.submitBatch({ tasks: [{ jobType: "r.credit", input: jsonAny(1) }, { jobType: "r.credit", input: jsonAny(2) }] })).tasks;
  const [a] = (await worker.next("assignments")).assignments;
  t.equal(a!.taskId, t1!.id);
  worker.send({ case: "complete", value: { $typeName: "taskwire.v1.TaskCompletion", taskId: a!.taskId, attempt: 1, leaseToken: "00000000-0000-4000-8000-000000000000", output: undefined } });
  t.equal((await worker.next("reportResult")).accepted, false);
  await sleep(300);
  t.same(worker.taken("assignments"), [], "no second assignment: the credit is still in use");
  await heartbeatFor(worker, 1_200); // past the 1 s lease
  t.equal((await get(t1!.id)).state, TaskState.RUNNING, "the held task is still heartbeated");
  worker.send({ case: "complete", value: { $typeName: "taskwire.v1.TaskCompletion", taskId: a!.taskId, attempt: 1, leaseToken: a!.leaseToken, output: undefined } });
  t.equal((await worker.next("reportResult")).accepted, true);
  t.equal((await worker.next("assignments")).assignments[0]!.taskId, t2!.id, "now the credit is free");
  worker.send({ case: "drain", value: { $typeName: "taskwire.v1.WorkerDrain" } });
  await worker.close();
});

t.test("a unary completion frees the stream's credit", async (t) => {
  await s.jobTypes.registerJobType({ name: "r.unary" });
  const worker = openClaimStream(s.workers, { workerId: "w-unary", jobTypes: ["r.unary"], credits: 1 });
  const [t1, t2] = (await s.tasks.submitBatch({ tasks: [{ jobType: "r.unary", input: jsonAny(1) }, { jobType: "r.unary", input: jsonAny(2) }] })).tasks;
  const [a] = (await worker.next("assignments")).assignments;
  await s.workers.completeTask({ completion: { taskId: a!.taskId, attempt: 1, leaseToken: a!.leaseToken } });
  t.equal((await worker.next("assignments")).assignments[0]!.taskId, a!.taskId === t1!.id ? t2!.id : t1!.id);
  worker.send({ case: "drain", value: { $typeName: "taskwire.v1.WorkerDrain" } });
  await worker.close();
});

t.test("NUL characters: error texts are cleaned, other text fields and type URLs are refused", async (t) => {
  await s.jobTypes.registerJobType({ name: "r.nul" });
  const [x, y] = (await s.tasks.submitBatch({ tasks: [{ jobType: "r.nul", input: jsonAny(1) }, { jobType: "r.nul", input: jsonAny(2) }] })).tasks;
  const worker = openClaimStream(s.workers, { workerId: "w-nul", jobTypes: ["r.nul"], credits: 2 });
  const { assignments } = await worker.next("assignments");
  const more = assignments.length < 2 ? (await worker.next("assignments")).assignments : [];
  for (const a of [...assignments, ...more]) {
    worker.send({ case: "fail", value: { $typeName: "taskwire.v1.TaskFailure", taskId: a.taskId, attempt: 1, leaseToken: a.leaseToken, error: "bad\u0000byte", nonRetryable: true } });
  }
  t.same([(await worker.next("reportResult")).accepted, (await worker.next("reportResult")).accepted], [true, true]);
  t.equal((await get(x!.id)).lastError, "bad\uFFFDbyte");
  t.equal((await get(y!.id)).state, TaskState.DEAD);
  const cancel = await rejection(() => s.tasks.cancel({ id: x!.id, reason: "a\u0000b" }));
  t.equal(cancel.code, Code.InvalidArgument);
  const submit = await rejection(() => s.tasks.submit({ task: { jobType: "r.nul", input: { $typeName: "google.protobuf.Any", typeUrl: "type.goo\u0000gle/google.protobuf.Value", value: new Uint8Array() } } }));
  t.equal(submit.code, Code.InvalidArgument);
  t.match(submit.message, /expected "type.googleapis.com\/<message name>"/);
  worker.send({ case: "drain", value: { $typeName: "taskwire.v1.WorkerDrain" } });
  await worker.close();
});

t.test("tasks claimed for a worker that drains at once go back without burning an attempt", async (t) => {
  await s.jobTypes.registerJobType({ name: "r.drain", defaultMaxAttempts: 1 });
  const tasks = (await s.tasks.submitBatch({ tasks: Array.from({ length: 5 }, (_, i) => ({ jobType: "r.drain", input: jsonAny(i) })) })).tasks;
  for (let round = 0; round < 5; round++) {
    const worker = openClaimStream(s.workers, { workerId: `w-drain-${round}`, jobTypes: ["r.drain"], credits: 5 });
    worker.send({ case: "drain", value: { $typeName: "taskwire.v1.WorkerDrain" } });
    for (const a of worker.taken("assignments").flatMap((b) => b.assignments)) {
      worker.send({ case: "release", value: { $typeName: "taskwire.v1.TaskRelease", taskId: a.taskId, attempt: a.attempt, leaseToken: a.leaseToken, reason: "test" } });
    }
    await worker.close();
  }
  await sleep(200);
  const states = await Promise.all(tasks.map((x) => get(x.id)));
  t.same(states.filter((x) => x.state === TaskState.DEAD).map((x) => x.id), [], "none dead-lettered without running");
});

t.test("30 concurrent registrations of a new job type: all succeed, one creates it", async (t) => {
  const results = await Promise.all(Array.from({ length: 30 }, () => s.jobTypes.registerJobType({ name: "r.race", defaultMaxAttempts: 4 })));
  t.equal(results.filter((r) => r.created).length, 1);
  t.ok(results.every((r) => r.jobType?.defaultMaxAttempts === 4));
});

t.test("a replayed completion in the same batch is rejected", async (t) => {
  await s.jobTypes.registerJobType({ name: "r.replay" });
  const worker = openClaimStream(s.workers, { workerId: "w-replay", jobTypes: ["r.replay"], credits: 1 });
  await s.tasks.submit({ task: { jobType: "r.replay", input: jsonAny(1) } });
  const [a] = (await worker.next("assignments")).assignments;
  const completion = { $typeName: "taskwire.v1.TaskCompletion" as const, taskId: a!.taskId, attempt: 1, leaseToken: a!.leaseToken, output: undefined };
  worker.send({ case: "complete", value: completion });
  worker.send({ case: "complete", value: completion });
  const answers = [await worker.next("reportResult"), await worker.next("reportResult")];
  t.same(answers.map((x) => x.accepted).sort(), [false, true], "exactly one accepted");
  worker.send({ case: "drain", value: { $typeName: "taskwire.v1.WorkerDrain" } });
  await worker.close();
});

t.test("a forged page token is INVALID_ARGUMENT, not INTERNAL", async (t) => {
  const fingerprint = filterFingerprint({ namespace: "default", jobTypes: [], states: [], workerId: null, createdAfter: null, createdBefore: null });
  const error = await rejection(() => s.tasks.listTasks({ pageToken: encodePageToken("99999999999999999999", fingerprint) }));
  t.equal(error.code, Code.InvalidArgument);
});

t.test("an HTTP/1.1 request arriving one byte at a time is served as HTTP/1.1", async (t) => {
  const { port } = new URL(s.url);
  const socket = net.connect(Number(port), "127.0.0.1");
  await new Promise((resolve) => socket.once("connect", resolve));
  let response = "";
  socket.on("data", (chunk) => (response += chunk.toString()));
  const request = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  for (const ch of request.slice(0, 4)) {
    socket.write(ch);
    await sleep(30);
  }
  socket.write(request.slice(4));
  await new Promise((resolve) => socket.once("close", resolve));
  t.match(response, /^HTTP\/1\.1 200/);
});

t.test("one claim returns tasks in queue order even where ids cross a digit boundary (no text ordering)", async (t) => {
  await s.jobTypes.registerJobType({ name: "r.order" });
  // Enough tasks that some ids have one more digit than others, all with the same priority and run_at.
  const submitted = (await s.tasks.submitBatch({ tasks: Array.from({ length: 1_000 }, (_, i) => ({ jobType: "r.order", input: jsonAny(i) })) })).tasks;
  const ids = submitted.map((x) => BigInt(x.id));
  t.ok(String(ids[0]).length < String(ids.at(-1)).length, `ids ${ids[0]}..${ids.at(-1)} cross a digit boundary`);
  const claimed = (await s.workers.claimTasks({ workerId: "w-order", jobTypes: ["r.order"], maxTasks: 1_000 })).assignments.map((a) => BigInt(a.taskId));
  t.same(claimed, ids, "oldest first");
});
