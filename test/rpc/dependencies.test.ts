/**
 * Task dependencies over the real server: chains and diamonds finishing and failing, every way a
 * parent can end DEAD or CANCELLED, submits naming finished parents, retries, reads, validation.
 */
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import t from "tap";
import { TaskSpecSchema, TaskState, type Task, type TaskSpec } from "../../src/gen/taskwire/v1/task_pb.js";
import type { Assignment } from "../../src/gen/taskwire/v1/worker_pb.js";
import { openClaimStream } from "../helpers/claim-stream.js";
import { anyJson, jsonAny } from "../helpers/payload.js";
import { rejection } from "../helpers/rejection.js";
import { startTestServer } from "../helpers/server.js";

// A long safety poll: a child is handed out only when the NOTIFY of its move to PENDING wakes the dispatcher.
const s = await startTestServer(t, { safetyPollMs: 60_000, sweepIntervalMs: 50 });
const db = s.server.engine.database.db;

let jobTypeCounter = 0;
/** A fresh job type per test, so claims never see another test's tasks. */
async function jobType(options: { maxAttempts?: number; timeoutMs?: number } = {}): Promise<string> {
  const name = `deps.t${++jobTypeCounter}`;
  await s.jobTypes.registerJobType({
    name,
    defaultMaxAttempts: options.maxAttempts ?? 3,
    defaultTimeout: options.timeoutMs === undefined ? undefined : durationFromMs(options.timeoutMs),
    defaultRetry: { backoffBase: durationFromMs(0), backoffCap: durationFromMs(0) },
  });
  return name;
}

const spec = (jt: string, input: unknown, fields: Partial<Omit<TaskSpec, "$typeName">> = {}) =>
  create(TaskSpecSchema, { jobType: jt, input: jsonAny(input as never), ...fields });
const submit = async (jt: string, input: unknown, fields: Partial<Omit<TaskSpec, "$typeName">> = {}) =>
  (await s.tasks.submit({ task: spec(jt, input, fields) })).task!;
const get = async (id: string) => (await s.tasks.getTask({ id })).task!;
const states = async (...ids: string[]) => Promise.all(ids.map(async (id) => TaskState[(await get(id)).state]));

/** Claims every ready task of the job type (unary). */
async function claim(jt: string): Promise<Assignment[]> {
  return (await s.workers.claimTasks({ workerId: "w-deps", jobTypes: [jt], maxTasks: 100 })).assignments;
}
async function complete(a: Assignment, output?: unknown): Promise<void> {
  await s.workers.completeTask({ completion: { taskId: a.taskId, attempt: a.attempt, leaseToken: a.leaseToken, output: output === undefined ? undefined : jsonAny(output as never) } });
}
async function fail(a: Assignment, nonRetryable: boolean): Promise<void> {
  await s.workers.failTask({ failure: { taskId: a.taskId, attempt: a.attempt, leaseToken: a.leaseToken, error: "boom", nonRetryable } });
}
/** Claims exactly the one ready task of the job type, which must be `id`. */
async function claimOnly(jt: string, id: string): Promise<Assignment> {
  const claimed = await claim(jt);
  if (claimed.length !== 1 || claimed[0]!.taskId !== id) throw new Error(`expected only task ${id} to be ready, got ${claimed.map((a) => a.taskId).join(", ") || "none"}`);
  return claimed[0]!;
}
/** Waits until the task is in `state` (for the sweeper's work). */
async function until(id: string, state: TaskState, timeoutMs = 10_000): Promise<Task> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const task = await get(id);
    if (task.state === state) return task;
    if (Date.now() > deadline) throw new Error(`task ${id} is ${TaskState[task.state]}, not ${TaskState[state]}, after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
const parentsOf = (a: Assignment) => a.parents.map((p) => ({ taskId: p.taskId, jobType: p.jobType, output: anyJson(p.output) }));

t.test("a chain finishing: each link waits, becomes PENDING with its parent's completion, and gets its parent's output", async (t) => {
  const jt = await jobType();
  const a = await submit(jt, "a");
  const b = await submit(jt, "b", { dependsOn: [a.id] });
  const c = await submit(jt, "c", { dependsOn: [b.id] });
  t.equal(b.state, TaskState.WAITING, "b waits");
  t.same([b.dependsOn, b.unmetDependencies], [[a.id], 1]);
  t.same([c.dependsOn, c.unmetDependencies], [[b.id], 1]);
  t.equal(a.dependsOn.length, 0);

  const first = await claimOnly(jt, a.id);
  t.same(first.parents, [], "a task without dependencies gets no parents");
  await complete(first, { from: "a" });
  // The completion's transaction moved b: answered means committed.
  t.same(await states(a.id, b.id, c.id), ["SUCCEEDED", "PENDING", "WAITING"]);
  t.equal((await get(b.id)).unmetDependencies, 0);
  const second = await claimOnly(jt, b.id);
  t.same(parentsOf(second), [{ taskId: a.id, jobType: jt, output: { from: "a" } }], "b's handler gets a's output");
  await complete(second); // no output
  t.same(await states(b.id, c.id), ["SUCCEEDED", "PENDING"]);
  const third = await claimOnly(jt, c.id);
  t.same(parentsOf(third), [{ taskId: b.id, jobType: jt, output: undefined }], "a parent without output is listed without one");
  await complete(third, 3);
  t.same(await states(a.id, b.id, c.id), ["SUCCEEDED", "SUCCEEDED", "SUCCEEDED"]);

  const events = await db.query<{ task_id: string; state: string; previous_state: string | null; seq: string }>(
    "SELECT task_id::text, state, previous_state, seq::text FROM task_event WHERE task_id = ANY($1::bigint[]) ORDER BY seq",
    [[a.id, b.id]],
  );
  const seqOf = (id: string, state: string) => Number(events.find((e) => e.task_id === id && e.state === state)!.seq);
  t.same(events.filter((e) => e.task_id === b.id).map((e) => [e.previous_state, e.state]), [[null, "waiting"], ["waiting", "pending"], ["pending", "running"], ["running", "succeeded"]], "b's events");
  t.ok(seqOf(a.id, "succeeded") < seqOf(b.id, "pending"), "the parent's completion comes before the child's move in the event order");
});

t.test("a diamond from one SubmitBatch: the join waits for both sides, completed in one report batch", async (t) => {
  const jt = await jobType();
  const { tasks } = await s.tasks.submitBatch({
    tasks: [spec(jt, "top"), spec(jt, "left", { dependsOnIndex: [0] }), spec(jt, "right", { dependsOnIndex: [0] }), spec(jt, "join", { dependsOnIndex: [1, 2] })],
  });
  const [top, left, right, join] = tasks as [Task, Task, Task, Task];
  t.same(tasks.map((x) => TaskState[x.state]), ["PENDING", "WAITING", "WAITING", "WAITING"]);
  t.same(join.dependsOn, [left.id, right.id], "in-batch references became ids");
  t.equal(join.unmetDependencies, 2);
  t.ok(BigInt(top.id) < BigInt(left.id) && BigInt(right.id) < BigInt(join.id), "ids in batch order");

  await complete(await claimOnly(jt, top.id), "T");
  t.same(await states(left.id, right.id, join.id), ["PENDING", "PENDING", "WAITING"]);
  const sides = await claim(jt);
  t.same(sides.map((x) => x.taskId).sort(), [left.id, right.id].sort());
  // Both completions in one ReportBatch: one statement decrements the join twice.
  const worker = openClaimStream(s.workers, { workerId: "w-diamond", jobTypes: [await jobType()], credits: 1 });
  await worker.next("welcome");
  worker.send({
    case: "reports",
    value: {
      $typeName: "taskwire.v1.ReportBatch",
      completions: sides.map((x) => ({ $typeName: "taskwire.v1.TaskCompletion" as const, taskId: x.taskId, attempt: x.attempt, leaseToken: x.leaseToken, output: jsonAny(x.taskId === left.id ? "L" : "R") })),
      failures: [],
      releases: [],
    },
  });
  t.same((await worker.next("reportResults")).results.map((r) => r.accepted), [true, true]);
  await worker.close();
  t.same(await states(join.id), ["PENDING"]);
  const last = await claimOnly(jt, join.id);
  t.same(parentsOf(last), [{ taskId: left.id, jobType: jt, output: "L" }, { taskId: right.id, jobType: jt, output: "R" }], "both sides' outputs, by id");
  await complete(last);
});

t.test("a diamond failing: a non-retryable failure at the top ends every waiting task DEAD, naming its parent", async (t) => {
  const jt = await jobType();
  const { tasks } = await s.tasks.submitBatch({
    tasks: [spec(jt, "top"), spec(jt, "left", { dependsOnIndex: [0] }), spec(jt, "right", { dependsOnIndex: [0] }), spec(jt, "join", { dependsOnIndex: [1, 2] }), spec(jt, "after", { dependsOnIndex: [3] })],
  });
  const [top, left, right, join, after] = tasks as [Task, Task, Task, Task, Task];
  await fail(await claimOnly(jt, top.id), true);
  const got = await Promise.all([top, left, right, join, after].map((x) => get(x.id)));
  t.same(got.map((x) => TaskState[x.state]), ["DEAD", "DEAD", "DEAD", "DEAD", "DEAD"]);
  t.same(got.slice(1).map((x) => x.lastError), [
    `dependency ${top.id} ended DEAD`,
    `dependency ${top.id} ended DEAD`,
    `dependency ${left.id} ended DEAD`,
    `dependency ${join.id} ended DEAD`,
  ], "each names its parent (the join its lower-id one)");
  t.ok(got.every((x) => x.finishedAt !== undefined && x.unmetDependencies === 0));
  t.same(await claim(jt), [], "nothing is claimable");
  const [dead] = await db.query<{ n: string }>("SELECT count(*)::text AS n FROM task_event WHERE task_id = ANY($1::bigint[]) AND previous_state = 'waiting' AND state = 'dead' AND error LIKE 'dependency % ended DEAD'", [[left.id, right.id, join.id, after.id]]);
  t.equal(dead!.n, "4", "each dependent's move to DEAD is an event with its reason");
});

t.test("a chain failing after its attempts run out (retryable failures)", async (t) => {
  const jt = await jobType({ maxAttempts: 2 });
  const a = await submit(jt, "a");
  const b = await submit(jt, "b", { dependsOn: [a.id] });
  const c = await submit(jt, "c", { dependsOn: [b.id] });
  await fail(await claimOnly(jt, a.id), false);
  t.same(await states(a.id, b.id), ["PENDING", "WAITING"], "a retry keeps its dependents waiting");
  await fail(await claimOnly(jt, a.id), false);
  t.same(await states(a.id, b.id, c.id), ["DEAD", "DEAD", "DEAD"]);
  t.equal((await get(c.id)).lastError, `dependency ${b.id} ended DEAD`);
});

t.test("a parent timed out past its retries by the sweeper", async (t) => {
  const jt = await jobType({ maxAttempts: 1, timeoutMs: 100 });
  const a = await submit(jt, "a");
  const b = await submit(jt, "b", { dependsOn: [a.id] });
  await claimOnly(jt, a.id);
  await until(a.id, TaskState.DEAD);
  const child = await get(b.id);
  t.equal(child.state, TaskState.DEAD, "the sweep's transaction ended the child too");
  t.equal(child.lastError, `dependency ${a.id} ended DEAD`);
});

t.test("a parent whose lease ran out (no heartbeat) on its last attempt, taken back by the sweeper", async (t) => {
  const name = `deps.t${++jobTypeCounter}`;
  await s.jobTypes.registerJobType({ name, defaultMaxAttempts: 1, leaseDuration: durationFromMs(1_000) });
  const a = await submit(name, "a");
  const b = await submit(name, "b", { dependsOn: [a.id] });
  await claimOnly(name, a.id); // a unary worker that never heartbeats
  const swept = await until(a.id, TaskState.DEAD);
  t.match(swept.lastError, /lost: worker w-deps sent no heartbeat within the lease/);
  t.same([TaskState[(await get(b.id)).state], (await get(b.id)).lastError], ["DEAD", `dependency ${a.id} ended DEAD`]);
});

t.test("a parent its worker left on a clean close (drain, then end of stream) on its last attempt: handed back, its dependent still waits", async (t) => {
  const jt = await jobType({ maxAttempts: 1 });
  const a = await submit(jt, "a");
  const b = await submit(jt, "b", { dependsOn: [a.id] });
  const worker = openClaimStream(s.workers, { workerId: "w-left", jobTypes: [jt], credits: 1 });
  t.equal((await worker.next("assignments")).assignments[0]!.taskId, a.id);
  worker.send({ case: "drain", value: { $typeName: "taskwire.v1.WorkerDrain" } });
  await worker.close();
  await until(a.id, TaskState.PENDING);
  t.equal((await get(b.id)).state, TaskState.WAITING, "the parent's attempt was not counted, so it is not DEAD and neither is its dependent");
});

t.test("cancel: of a parent (pending or running), and of a waiting task with dependents of its own", async (t) => {
  const jt = await jobType();
  const pending = await submit(jt, "p", { runAt: timestampFromMs(Date.now() + 3_600_000) });
  const onPending = await submit(jt, "x", { dependsOn: [pending.id] });
  await s.tasks.cancel({ id: pending.id, reason: "no longer needed" });
  t.equal((await get(onPending.id)).state, TaskState.DEAD);
  t.equal((await get(onPending.id)).lastError, `dependency ${pending.id} ended CANCELLED`);

  const running = await submit(jt, "r");
  const onRunning = await submit(jt, "y", { dependsOn: [running.id] });
  await claimOnly(jt, running.id);
  await s.tasks.cancel({ id: running.id });
  t.same(await states(running.id, onRunning.id), ["CANCELLED", "DEAD"]);

  const root = await submit(jt, "root", { runAt: timestampFromMs(Date.now() + 3_600_000) });
  const middle = await submit(jt, "middle", { dependsOn: [root.id] });
  const leaf = await submit(jt, "leaf", { dependsOn: [middle.id] });
  const cancelled = (await s.tasks.cancel({ id: middle.id, reason: "skip" })).task!;
  t.equal(cancelled.state, TaskState.CANCELLED, "a WAITING task cancels at once");
  t.equal(cancelled.unmetDependencies, 0);
  t.same(await states(root.id, middle.id, leaf.id), ["PENDING", "CANCELLED", "DEAD"]);
  t.equal((await get(leaf.id)).lastError, `dependency ${middle.id} ended CANCELLED`);
  await s.tasks.cancel({ id: root.id });
});

t.test("submitting against finished parents: all SUCCEEDED starts PENDING; one DEAD or CANCELLED ends DEAD at once", async (t) => {
  const jt = await jobType();
  const [x, y] = [await submit(jt, "x"), await submit(jt, "y")];
  for (const a of await claim(jt)) await complete(a, a.taskId === x.id ? "X" : "Y");
  const ready = await submit(jt, "ready", { dependsOn: [y.id, x.id] });
  t.equal(ready.state, TaskState.PENDING, "every parent already succeeded");
  t.same([ready.dependsOn, ready.unmetDependencies], [[x.id, y.id], 0], "dependencies in id order");
  t.same(parentsOf(await claimOnly(jt, ready.id)).map((p) => p.output), ["X", "Y"]);

  const doomed = await submit(jt, "d");
  await fail(await claimOnly(jt, doomed.id), true);
  const { tasks } = await s.tasks.submitBatch({
    tasks: [spec(jt, "late", { dependsOn: [x.id, doomed.id] }), spec(jt, "later", { dependsOnIndex: [0] }), spec(jt, "fine", { dependsOn: [x.id] })],
  });
  t.same(tasks.map((x) => TaskState[x.state]), ["DEAD", "DEAD", "PENDING"], "the answer shows the tasks as committed");
  t.same(tasks.slice(0, 2).map((x) => x.lastError), [`dependency ${doomed.id} ended DEAD`, `dependency ${tasks[0]!.id} ended DEAD`]);
  const events = await db.query<{ previous_state: string | null; state: string }>("SELECT previous_state, state FROM task_event WHERE task_id = $1 ORDER BY seq", [tasks[0]!.id]);
  t.same(events.map((e) => [e.previous_state, e.state]), [[null, "waiting"], ["waiting", "dead"]], "created WAITING, then ended DEAD");
  const cancelled = await submit(jt, "c", { runAt: timestampFromMs(Date.now() + 3_600_000) });
  await s.tasks.cancel({ id: cancelled.id });
  const onCancelled = await submit(jt, "oc", { dependsOn: [cancelled.id] });
  t.equal(onCancelled.state, TaskState.DEAD);
  t.equal(onCancelled.lastError, `dependency ${cancelled.id} ended CANCELLED`);
  await complete(await claimOnly(jt, tasks[2]!.id));
});

t.test("retry: dependents stay DEAD; a dependent retried before its parent is refused, after it waits or runs", async (t) => {
  const jt = await jobType({ maxAttempts: 1 });
  const a = await submit(jt, "a");
  const b = await submit(jt, "b", { dependsOn: [a.id] });
  const c = await submit(jt, "c", { dependsOn: [b.id] });
  await fail(await claimOnly(jt, a.id), false);
  t.same(await states(a.id, b.id, c.id), ["DEAD", "DEAD", "DEAD"]);
  const refused = await rejection(() => s.tasks.retry({ id: b.id }));
  t.equal(refused.code, Code.FailedPrecondition);
  t.match(refused.message, `task ${b.id} depends on task ${a.id}, which is DEAD; retry that task first`);
  t.equal((await get(b.id)).state, TaskState.DEAD, "nothing changed");

  t.equal((await s.tasks.retry({ id: a.id })).task!.state, TaskState.PENDING);
  t.same(await states(b.id, c.id), ["DEAD", "DEAD"], "retrying a parent does not revive its dependents");
  const waiting = (await s.tasks.retry({ id: b.id })).task!;
  t.same([TaskState[waiting.state], waiting.unmetDependencies], ["WAITING", 1], "its parent is unfinished: it waits");
  t.equal((await s.tasks.retry({ id: c.id })).task!.state, TaskState.WAITING, "and so does its own dependent");
  await complete(await claimOnly(jt, a.id));
  await complete(await claimOnly(jt, b.id));
  await complete(await claimOnly(jt, c.id));
  t.same(await states(a.id, b.id, c.id), ["SUCCEEDED", "SUCCEEDED", "SUCCEEDED"], "the revived chain ran in order");

  const d = await submit(jt, "d", { dependsOn: [a.id] });
  await fail(await claimOnly(jt, d.id), false);
  t.equal((await s.tasks.retry({ id: d.id })).task!.state, TaskState.PENDING, "its parent succeeded: a plain retry");
  await complete(await claimOnly(jt, d.id));
  const running = await rejection(() => s.tasks.retry({ id: c.id }));
  t.equal(running.code, Code.FailedPrecondition);
  t.match(running.message, /cannot retry a task that is SUCCEEDED/, "a task that is not DEAD or CANCELLED says so first");
});

t.test("reads: GetTask and ListTasks show dependencies; ListTasks filters WAITING", async (t) => {
  const jt = await jobType();
  const a = await submit(jt, "a");
  const b = await submit(jt, "b", { dependsOn: [a.id] });
  const got = await get(b.id);
  t.same([TaskState[got.state], got.dependsOn, got.unmetDependencies], ["WAITING", [a.id], 1]);
  t.equal(got.queuePosition, undefined, "a WAITING task has no queue position");
  const waiting = await s.tasks.listTasks({ jobTypes: [jt], states: [TaskState.WAITING] });
  t.same(waiting.tasks.map((x) => x.id), [b.id]);
  t.equal(waiting.totalCount, 1n);
  t.same(waiting.tasks[0]!.dependsOn, [a.id], "lists show dependencies too");
  const all = await s.tasks.listTasks({ jobTypes: [jt] });
  t.same(all.tasks.map((x) => [x.id, x.dependsOn]), [[b.id, [a.id]], [a.id, []]]);
  await s.tasks.cancel({ id: a.id });
});

t.test("a worker connected to the child's job type gets it when the parent completes (NOTIFY, no poll)", async (t) => {
  const parentType = await jobType();
  const childType = await jobType();
  const a = await submit(parentType, "a");
  const child = await submit(childType, "c", { dependsOn: [a.id] });
  const worker = openClaimStream(s.workers, { workerId: "w-wake", jobTypes: [childType], credits: 1 });
  await worker.next("welcome");
  await complete(await claimOnly(parentType, a.id), { ok: true });
  const { assignments } = await worker.next("assignments", 5_000);
  t.equal(assignments[0]!.taskId, child.id);
  t.same(parentsOf(assignments[0]!), [{ taskId: a.id, jobType: parentType, output: { ok: true } }], "with its parent's output on the stream");
  worker.send({ case: "complete", value: { $typeName: "taskwire.v1.TaskCompletion", taskId: child.id, attempt: 1, leaseToken: assignments[0]!.leaseToken } });
  t.equal((await worker.next("reportResult")).accepted, true);
  await worker.close();
});

t.test("validation: unknown and foreign ids, bad positions, duplicates, bounds and schedules", async (t) => {
  const jt = await jobType();
  const a = await submit(jt, "a");
  await db.query("INSERT INTO namespace (name) VALUES ('other') ON CONFLICT DO NOTHING");
  const [foreign] = await db.query<{ id: string }>(
    "INSERT INTO task (namespace, job_type, input_type_url, input, priority, max_attempts) VALUES ('other', $1, '', '\\x'::bytea, 0, 1) RETURNING id::text",
    [jt],
  );
  const before = await db.query<{ n: string }>("SELECT count(*)::text AS n FROM task");
  const cases: [string, () => Promise<unknown>, RegExp][] = [
    ["an unknown id", () => s.tasks.submit({ task: spec(jt, 1, { dependsOn: [a.id, "999999"] }) }), /task\.depends_on: task "999999" does not exist in this namespace/],
    ["another namespace's task", () => s.tasks.submit({ task: spec(jt, 1, { dependsOn: [foreign!.id] }) }), new RegExp(`task\\.depends_on: task "${foreign!.id}" does not exist in this namespace`)],
    ["an unknown id in a batch names its task", () => s.tasks.submitBatch({ tasks: [spec(jt, 1), spec(jt, 2, { dependsOn: ["999998"] })] }), /tasks\[1\]\.depends_on: task "999998" does not exist/],
    ["a malformed id", () => s.tasks.submit({ task: spec(jt, 1, { dependsOn: ["abc"] }) }), /task\.depends_on\[0\]: "abc" is not a task id/],
    ["an id named twice", () => s.tasks.submit({ task: spec(jt, 1, { dependsOn: [a.id, a.id] }) }), /task\.depends_on\[1\]: names task \d+ a second time/],
    ["depends_on_index in Submit", () => s.tasks.submit({ task: spec(jt, 1, { dependsOnIndex: [0] }) }), /task\.depends_on_index: .*only allowed in SubmitBatch/],
    ["a forward reference", () => s.tasks.submitBatch({ tasks: [spec(jt, 1, { dependsOnIndex: [1] }), spec(jt, 2)] }), /tasks\[0\]\.depends_on_index\[0\]: is 1, but this is the first task of the batch/],
    ["a self reference", () => s.tasks.submitBatch({ tasks: [spec(jt, 1), spec(jt, 2, { dependsOnIndex: [1] })] }), /tasks\[1\]\.depends_on_index\[0\]: is 1; allowed: 0 to 0, the tasks before this one/],
    ["a negative position", () => s.tasks.submitBatch({ tasks: [spec(jt, 1), spec(jt, 2, { dependsOnIndex: [-1] })] }), /tasks\[1\]\.depends_on_index\[0\]: is -1; allowed: 0 to 0/],
    ["a position named twice", () => s.tasks.submitBatch({ tasks: [spec(jt, 1), spec(jt, 2, { dependsOnIndex: [0, 0] })] }), /tasks\[1\]\.depends_on_index\[1\]: names task 0 of the batch a second time/],
    ["101 dependencies", () => s.tasks.submitBatch({ tasks: [...Array.from({ length: 101 }, (_, i) => spec(jt, i)), spec(jt, "many", { dependsOnIndex: Array.from({ length: 101 }, (_, i) => i) })] }), /tasks\[101\]\.depends_on: names 101 dependencies .*the limit is 100 per task/],
    ["over 10000 dependencies in one call", () => s.tasks.submitBatch({ tasks: Array.from({ length: 1000 }, (_, i) => spec(jt, i, { dependsOnIndex: Array.from({ length: Math.min(i, 11) }, (_, k) => k) })) }), /tasks: name 10934 dependencies in all; the limit is 10000 per call/],
    ["a schedule with dependencies", () => s.schedules.createSchedule({ name: "dep-sched", cron: "* * * * *", task: spec(jt, 1, { dependsOn: [a.id] }) }), /task\.depends_on: must be unset: a schedule's tasks cannot have dependencies/],
  ];
  for (const [label, call, message] of cases) {
    const error = await rejection(call);
    t.equal(error.code, Code.InvalidArgument, `${label}: INVALID_ARGUMENT`);
    t.match(error.message, message, label);
  }
  const after = await db.query<{ n: string }>("SELECT count(*)::text AS n FROM task");
  t.equal(after[0]!.n, before[0]!.n, "no rejected submit wrote a task");
  const [edges] = await db.query<{ n: string }>("SELECT count(*)::text AS n FROM task_dependency WHERE parent_id = $1", [foreign!.id]);
  t.equal(edges!.n, "0");
  const [flag] = await db.query<{ has_dependents: boolean }>("SELECT has_dependents FROM task WHERE id = $1", [foreign!.id]);
  t.equal(flag!.has_dependents, false, "another namespace's task is not touched");
  const ok = await s.tasks.submitBatch({ tasks: [...Array.from({ length: 100 }, (_, i) => spec(jt, i)), spec(jt, "hundred", { dependsOnIndex: Array.from({ length: 100 }, (_, i) => i) })] });
  t.equal(ok.tasks[100]!.dependsOn.length, 100, "100 dependencies are allowed");
  t.equal(ok.tasks[100]!.unmetDependencies, 100);
  await s.tasks.cancel({ id: a.id });
});

t.test("retention keeps a parent while a dependent is unfinished, and deletes edges with their child", async (t) => {
  await s.jobTypes.registerJobType({ name: "deps.short", retention: durationFromMs(1_000), defaultRetry: { backoffBase: durationFromMs(0) } });
  const a = await submit("deps.short", "a");
  const b = await submit("deps.short", "b", { dependsOn: [a.id] });
  const c = await submit("deps.short", "c", { dependsOn: [a.id] });
  await complete(await claimOnly("deps.short", a.id), "A");
  await db.query("UPDATE task SET finished_at = now() - interval '1 hour' WHERE id = $1", [a.id]);
  const pruned = async () => {
    await s.server.engine.pruner.prune();
    return (await db.query<{ id: string }>("SELECT id::text FROM task WHERE id = ANY($1::bigint[]) ORDER BY id", [[a.id, b.id, c.id]])).map((r) => r.id);
  };
  t.same(await pruned(), [a.id, b.id, c.id], "a is past its retention but kept: b and c still need its output");
  const claimed = await claim("deps.short");
  t.same(claimed.map((x) => parentsOf(x)[0]!.output), ["A", "A"]);
  await complete(claimed[0]!);
  t.same(await pruned(), [a.id, b.id, c.id], "one dependent is still running");
  await complete(claimed[1]!);
  await db.query("UPDATE task SET finished_at = now() - interval '1 hour' WHERE id = ANY($1::bigint[])", [[b.id, c.id]]);
  t.same(await pruned(), [], "all finished: all go");
  const [edges] = await db.query<{ n: string }>("SELECT count(*)::text AS n FROM task_dependency WHERE child_id = ANY($1::bigint[])", [[b.id, c.id]]);
  t.equal(edges!.n, "0", "their edges went with them");
});

t.test("retention margin: a finished task less than a minute from deletion cannot be named as a dependency, by Submit or by a Retry", async (t) => {
  await s.jobTypes.registerJobType({ name: "deps.expiring", retention: durationFromMs(3_600_000), defaultRetry: { backoffBase: durationFromMs(0) } });
  const parent = await submit("deps.expiring", "p");
  await complete(await claimOnly("deps.expiring", parent.id), "P");
  const finishedAgo = (interval: string) => db.query("UPDATE task SET finished_at = now() - $2::interval WHERE id = $1", [parent.id, interval]);

  await finishedAgo("58 minutes");
  const early = await submit("deps.expiring", "early", { dependsOn: [parent.id] });
  t.equal(early.state, TaskState.PENDING, "two minutes of retention left: accepted, PENDING (its parent SUCCEEDED)");
  await s.tasks.cancel({ id: early.id });

  await finishedAgo("59 minutes 30 seconds");
  const late = await rejection(() => s.tasks.submit({ task: spec("deps.expiring", "late", { dependsOn: [parent.id] }) }));
  t.equal(late.code, Code.InvalidArgument, "30 seconds left: refused");
  t.match(late.message, new RegExp(`task\\.depends_on: task "${parent.id}" cannot be depended on: its job type's retention deletes it after \\S+Z, less than a minute from now`));
  const inBatch = await rejection(() => s.tasks.submitBatch({ tasks: [spec("deps.expiring", 0), spec("deps.expiring", 1, { dependsOn: [parent.id], dependsOnIndex: [0] })] }));
  t.match(inBatch.message, /^\[invalid_argument\] tasks\[1\]\.depends_on: /, "in a batch, naming the task that names it");
  const retried = await rejection(() => s.tasks.retry({ id: early.id }));
  t.equal(retried.code, Code.FailedPrecondition, "a Retry of a dependent: refused too");
  t.match(retried.message, new RegExp(`task ${early.id} depends on task ${parent.id}, which retention deletes within a minute`));
  t.equal((await get(early.id)).state, TaskState.CANCELLED, "and left as it was");

  await finishedAgo("2 hours");
  t.match((await rejection(() => s.tasks.submit({ task: spec("deps.expiring", "past", { dependsOn: [parent.id] }) }))).message, /cannot be depended on/, "past its retention (not pruned yet): refused");
  const [count] = await db.query<{ n: string }>("SELECT count(*)::text AS n FROM task WHERE job_type = 'deps.expiring'");
  t.equal(count!.n, "2", "nothing refused was written");

  // Retention counts from the end: an unfinished task of a job type with a short retention is always fine.
  await s.jobTypes.registerJobType({ name: "deps.brief", retention: durationFromMs(1_000) });
  const running = await submit("deps.brief", "r");
  t.equal((await submit("deps.brief", "child", { dependsOn: [running.id] })).state, TaskState.WAITING);
});

t.test("retention margin: under two minutes of retention, half of it; a key's holder about to be deleted answers UNAVAILABLE, not the client's mistake", async (t) => {
  await s.jobTypes.registerJobType({ name: "deps.short", retention: durationFromMs(60_000) });
  const parent = await submit("deps.short", "p");
  await complete(await claimOnly("deps.short", parent.id), "P");
  const finishedAgo = (id: string, interval: string) => db.query("UPDATE task SET finished_at = now() - $2::interval WHERE id = $1", [id, interval]);
  await finishedAgo(parent.id, "20 seconds");
  t.equal((await submit("deps.short", "child", { dependsOn: [parent.id] })).state, TaskState.PENDING, "40 s of a 60 s retention left: accepted");
  await finishedAgo(parent.id, "45 seconds");
  t.match((await rejection(() => s.tasks.submit({ task: spec("deps.short", "late", { dependsOn: [parent.id] }) }))).message, /cannot be depended on/, "15 s left: refused");

  await s.jobTypes.registerJobType({ name: "deps.keyed", retention: durationFromMs(3_600_000), dedupWindow: durationFromMs(3_600_000) });
  const graph = () => s.tasks.submitBatch({ tasks: [spec("deps.keyed", "a", { idempotencyKey: "graph-a" }), spec("deps.keyed", "b", { dependsOnIndex: [0] })] });
  const [a] = (await graph()).tasks;
  await complete(await claimOnly("deps.keyed", a!.id), "A");
  await finishedAgo(a!.id, "59 minutes 30 seconds");
  const refused = await rejection(graph);
  t.equal(refused.code, Code.Unavailable, "the key's holder is about to go: retry later");
  t.match(refused.message, new RegExp(`tasks\\[1\\]\\.depends_on_index: the task holding this submit's idempotency key, "${a!.id}", is about to be deleted by retention`));
  const [count] = await db.query<{ n: string }>("SELECT count(*)::text AS n FROM task WHERE job_type = 'deps.keyed'");
  t.equal(count!.n, "2", "nothing was written");
});

t.test("a claimed task whose dependency was deleted all the same ends DEAD naming it; it is never handed out with fewer parents", async (t) => {
  const jt = await jobType();
  const a = await submit(jt, "a");
  const b = await submit(jt, "b");
  for (const x of await claim(jt)) await complete(x, x.taskId === a.id ? "A" : "B");
  const child = await submit(jt, "child", { dependsOn: [a.id, b.id] });
  const grandchild = await submit(jt, "grandchild", { dependsOn: [child.id] });
  t.equal(child.state, TaskState.PENDING);
  // What the pruner's race would leave: the parent gone, its edge to the child still there.
  await db.query("DELETE FROM task WHERE id = $1", [b.id]);
  t.same(await claim(jt), [], "the child is not delivered");
  const dead = await get(child.id);
  t.equal(dead.state, TaskState.DEAD, "it ended DEAD");
  t.equal(dead.lastError, `dependency ${b.id} no longer exists (deleted by retention before this task ran), so its output cannot be handed to it`);
  t.equal(dead.attempts.length, 1, "its attempt is recorded");
  t.equal((await get(grandchild.id)).lastError, `dependency ${child.id} ended DEAD`, "and its own dependent ends DEAD with it");
});

t.test("a claim whose dependencies' outputs cannot be read hands its tasks back, attempts not counted", async (t) => {
  const { claimWithParents } = await import("../../src/dispatch/claim-with-parents.js");
  const jt = await jobType();
  const a = await submit(jt, "a");
  await complete(await claimOnly(jt, a.id), "A");
  const plain = await submit(jt, "plain");
  const child = await submit(jt, "child", { dependsOn: [a.id] });
  // The database itself, except that the read of the parents' outputs fails (as if the connection broke there).
  const failing = {
    query: <Row>(text: string, values?: readonly unknown[]) =>
      text.includes("FROM task_dependency d\nLEFT JOIN LATERAL") ? Promise.reject(new Error("connection lost")) : db.query<Row>(text, values),
  };
  await t.rejects(claimWithParents(failing, { namespace: "default", jobTypes: [jt], limit: 10, workerId: "w-broken" }), /connection lost/);
  const after = await Promise.all([plain.id, child.id].map(get));
  t.same(after.map((x) => TaskState[x.state]), ["PENDING", "PENDING"], "both claimed tasks are PENDING again");
  t.same(after.map((x) => x.attempts.map((at) => at.outcome)), [[7], [7]], "their attempts are recorded as released");
  const again = await claim(jt);
  t.same(again.map((x) => [x.taskId, parentsOf(x).map((p) => p.output)]).sort(), [[child.id, ["A"]], [plain.id, []]].sort(), "and the next claim delivers them whole");
  for (const x of again) await complete(x);
});
