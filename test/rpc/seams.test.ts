/**
 * Seams between features that were each tested alone: the direct hand-off, batched reports and
 * early credits, tenancy, dependencies and the JSON codec. Each test here once failed.
 */
import { create, createRegistry } from "@bufbuild/protobuf";
import { durationFromMs, ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import t from "tap";
import { Dispatcher } from "../../src/dispatch/dispatcher.js";
import { ReportBatcher } from "../../src/dispatch/report-batcher.js";
import { JobTypeRegistry } from "../../src/engine/job-type-registry.js";
import { AttemptOutcome, TaskState } from "../../src/gen/taskwire/v1/task_pb.js";
import { ReportBatchSchema, ReportKind, WorkerService, type Assignment } from "../../src/gen/taskwire/v1/worker_pb.js";
import { openClaimStream } from "../helpers/claim-stream.js";
import { testLogger } from "../helpers/logger.js";
import { anyJson, jsonAny } from "../helpers/payload.js";
import { rejection } from "../helpers/rejection.js";
import { clientsFor, createTestKey, startTestServer } from "../helpers/server.js";

const s = await startTestServer(t);
const get = async (id: string) => (await s.tasks.getTask({ id })).task!;

t.test("a JSON Claim stream whose task's dependency has an output it cannot render: FAILED_PRECONDITION, the task handed back", async (t) => {
  await s.jobTypes.registerJobType({ name: "seam.opaque.out", outputType: "acme.v1.Result" });
  await s.jobTypes.registerJobType({ name: "seam.after.opaque" });
  const parent = (await s.tasks.submit({ task: { jobType: "seam.opaque.out", input: jsonAny(1) } })).task!;
  const [a] = (await s.workers.claimTasks({ workerId: "bin-worker", jobTypes: ["seam.opaque.out"], maxTasks: 1 })).assignments;
  await s.workers.completeTask({ completion: { taskId: a!.taskId, attempt: a!.attempt, leaseToken: a!.leaseToken, output: { $typeName: "google.protobuf.Any", typeUrl: "type.googleapis.com/acme.v1.Result", value: new Uint8Array([8, 1]) } } });
  const child = (await s.tasks.submit({ task: { jobType: "seam.after.opaque", input: jsonAny(2), dependsOn: [parent.id] } })).task!;
  t.equal(child.state, TaskState.PENDING);

  const json = createClient(WorkerService, createConnectTransport({ baseUrl: s.url, httpVersion: "2", useBinaryFormat: false, jsonOptions: { registry: createRegistry(ValueSchema) } }));
  const w = openClaimStream(json, { workerId: "json-stream", jobTypes: ["seam.after.opaque"], credits: 1 });
  t.teardown(() => w.abort());
  await w.next("welcome");
  const error = await w.next("assignments", 5_000).then(
    () => new Error("the assignment was sent"),
    (e: Error) => e,
  );
  t.match(error.message, /failed_precondition.*job type "seam\.opaque\.out" is a acme\.v1\.Result, which the server cannot render as JSON/, "the stream says why");
  const deadline = Date.now() + 5_000;
  let back = await get(child.id);
  while (back.state !== TaskState.PENDING && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
    back = await get(child.id);
  }
  t.same([back.state, back.attempts[0]?.outcome, back.maxAttempts], [TaskState.PENDING, 7 /* RELEASED */, 4], "handed back at once, the attempt not counted");

  // A dependency's JSON output is shown as usual.
  await s.jobTypes.registerJobType({ name: "seam.json.out" });
  await s.jobTypes.registerJobType({ name: "seam.after.json" });
  const jsonParent = (await s.tasks.submit({ task: { jobType: "seam.json.out", input: jsonAny(1) } })).task!;
  const [p] = (await s.workers.claimTasks({ workerId: "bin-worker", jobTypes: ["seam.json.out"], maxTasks: 1 })).assignments;
  await s.workers.completeTask({ completion: { taskId: p!.taskId, attempt: p!.attempt, leaseToken: p!.leaseToken, output: jsonAny({ made: true }) } });
  const jsonChild = (await s.tasks.submit({ task: { jobType: "seam.after.json", input: jsonAny(2), dependsOn: [jsonParent.id] } })).task!;
  const w2 = openClaimStream(json, { workerId: "json-stream-2", jobTypes: ["seam.after.json"], credits: 1 });
  t.teardown(() => w2.abort());
  const [c] = (await w2.next("assignments")).assignments;
  t.equal(c!.taskId, jsonChild.id);
  t.same(anyJson(c!.parents[0]!.output), { made: true }, "the parent's output reaches the JSON worker");
});

t.test("two reports of one lease in one reports message: one is written, the other is refused for the state the first left", async (t) => {
  await s.jobTypes.registerJobType({ name: "seam.twice" });
  const w = openClaimStream(s.workers, { workerId: "w-twice", jobTypes: ["seam.twice"], credits: 2 });
  t.teardown(() => w.abort());
  await w.next("welcome");
  await s.tasks.submitBatch({ tasks: [{ jobType: "seam.twice", input: jsonAny(1) }, { jobType: "seam.twice", input: jsonAny(2) }] });
  const held: Assignment[] = [];
  while (held.length < 2) held.push(...(await w.next("assignments")).assignments);
  const [a, b] = held;
  const lease = (x: Assignment) => ({ taskId: x.taskId, attempt: x.attempt, leaseToken: x.leaseToken });
  w.send({
    case: "reports",
    value: create(ReportBatchSchema, {
      completions: [{ ...lease(a!), output: jsonAny("first") }, { ...lease(a!), output: jsonAny("again") }, { ...lease(b!), output: jsonAny("b") }],
      failures: [{ ...lease(b!), error: "too late", nonRetryable: true }],
    }),
  });
  const { results } = await w.next("reportResults");
  t.same(results.map((r) => [r.taskId, r.kind, r.accepted]), [
    [a!.taskId, ReportKind.COMPLETE, true],
    [a!.taskId, ReportKind.COMPLETE, false],
    [b!.taskId, ReportKind.COMPLETE, true],
    [b!.taskId, ReportKind.FAIL, false],
  ]);
  t.match(results[1]!.error, /the task is SUCCEEDED/, "the replay is refused because the first completion was written, not for a wrong token");
  t.match(results[3]!.error, /the task is SUCCEEDED/);
  t.same(anyJson((await get(a!.taskId)).output), "first", "the first report decided");
  t.equal((await get(b!.taskId)).state, TaskState.SUCCEEDED);
});

t.test("the report batcher answers a second report of one lease only after the first one is written", async (t) => {
  await s.jobTypes.registerJobType({ name: "seam.order" });
  await s.tasks.submit({ task: { jobType: "seam.order", input: jsonAny(1) } });
  const [a] = (await s.workers.claimTasks({ workerId: "w-order", jobTypes: ["seam.order"], maxTasks: 1 })).assignments;
  const batcher = new ReportBatcher(s.server.engine.database.db);
  const report = { namespace: "default", taskId: a!.taskId, attempt: a!.attempt, leaseToken: a!.leaseToken, output: null };
  const order: string[] = [];
  const answers = await Promise.all([
    batcher.complete(report).then((x) => (order.push("first"), x)),
    batcher.fail({ ...report, error: "late", nonRetryable: false, outcome: "failed" }).then(async (x) => {
      order.push("second");
      // Whoever explains the refusal reads the state the first report left.
      return [x, (await get(a!.taskId)).state];
    }),
  ]);
  t.same(answers, ["succeeded", [undefined, TaskState.SUCCEEDED]], "the second is refused, and by then the first is committed");
  t.same(order, ["first", "second"]);
});

t.test("a completion sent on a stream that does not hold the task has its output checked like any other", async (t) => {
  await s.jobTypes.registerJobType({ name: "seam.typed.out" });
  await s.tasks.submitBatch({ tasks: [{ jobType: "seam.typed.out", input: jsonAny(1) }, { jobType: "seam.typed.out", input: jsonAny(2) }] });
  // Claimed by the unary call, reported on a stream (which never held it).
  const claimed = (await s.workers.claimTasks({ workerId: "w-mixed", jobTypes: ["seam.typed.out"], maxTasks: 2 })).assignments;
  t.equal(claimed.length, 2);
  const [a, b] = claimed;
  const w = openClaimStream(s.workers, { workerId: "w-mixed", jobTypes: ["seam.typed.out"], credits: 1 });
  t.teardown(() => w.abort());
  await w.next("welcome");
  const wrong = { $typeName: "google.protobuf.Any" as const, typeUrl: "type.googleapis.com/acme.v1.NotJson", value: new Uint8Array([8, 1]) };
  w.send({ case: "complete", value: { $typeName: "taskwire.v1.TaskCompletion", taskId: a!.taskId, attempt: a!.attempt, leaseToken: a!.leaseToken, output: wrong } });
  const single = await w.next("reportResult");
  t.match(single, { accepted: false, error: /completion\.output: is a acme\.v1\.NotJson but job type "seam\.typed\.out" is schemaless/ });
  w.send({ case: "reports", value: create(ReportBatchSchema, { completions: [{ taskId: b!.taskId, attempt: b!.attempt, leaseToken: b!.leaseToken, output: wrong }, { taskId: "not-an-id", attempt: 1, leaseToken: b!.leaseToken }] }) });
  const { results } = await w.next("reportResults");
  t.match(results, [{ accepted: false, error: /schemaless/ }, { accepted: false, error: /is not a task id/ }], "in a batch too; a malformed id is refused alone");
  // The leases are current, so each refused output fails its attempt (the worker is done with it).
  for (const id of [a!.taskId, b!.taskId]) {
    const task = await get(id);
    t.same([task.state !== TaskState.RUNNING, AttemptOutcome[task.attempts[0]!.outcome]], [true, "FAILED"], `task ${id}: its attempt failed, not left RUNNING`);
    t.match(task.attempts[0]!.error, /^the output was refused: completion\.output: is a acme\.v1\.NotJson/);
  }
});

t.test("a report from another namespace naming a stream's lease leaves that stream's lease and credit alone", async (t) => {
  // Its own server: keys end development mode.
  const k = await startTestServer(t);
  const alpha = clientsFor(k.url, (await createTestKey(k.server.engine.database, "alpha", ["admin"])).token);
  const beta = clientsFor(k.url, (await createTestKey(k.server.engine.database, "beta", ["admin"])).token);
  await alpha.jobTypes.registerJobType({ name: "seam.fenced", leaseDuration: durationFromMs(1_000) });
  const [first, second] = (await alpha.tasks.submitBatch({ tasks: [{ jobType: "seam.fenced", input: jsonAny(1) }, { jobType: "seam.fenced", input: jsonAny(2) }] })).tasks;
  const w = openClaimStream(alpha.workers, { workerId: "w-alpha", jobTypes: ["seam.fenced"], credits: 1 });
  t.teardown(() => w.abort());
  const [a] = (await w.next("assignments")).assignments;
  t.equal(a!.taskId, first!.id);
  // Beta somehow knows alpha's lease: its completion is refused as an unknown task...
  const refused = await rejection(() => beta.workers.completeTask({ completion: { taskId: a!.taskId, attempt: a!.attempt, leaseToken: a!.leaseToken } }));
  t.equal(refused.code, Code.NotFound);
  // ...and alpha's stream still holds the task: no second assignment, and its heartbeats keep the lease.
  for (let i = 0; i < 4; i++) {
    w.send({ case: "heartbeat", value: { $typeName: "taskwire.v1.WorkerHeartbeat" } });
    await new Promise((r) => setTimeout(r, 300));
  }
  t.same(w.taken("assignments"), [], "the credit is still in use");
  t.same(w.taken("revoked"), [], "the lease was never lost");
  const task = (await alpha.tasks.getTask({ id: first!.id })).task!;
  t.same([task.state, task.attempt], [TaskState.RUNNING, 1], "still the first attempt, held through the heartbeats");
  t.equal((await alpha.tasks.getTask({ id: second!.id })).task!.state, TaskState.PENDING);
});

t.test("progress reported just before a unary outcome is written before it, as on the stream", async (t) => {
  await s.jobTypes.registerJobType({ name: "seam.progress" });
  const ids = (await s.tasks.submitBatch({ tasks: [1, 2, 3].map((i) => ({ jobType: "seam.progress", input: jsonAny(i) })) })).tasks.map((x) => x.id);
  const claimed = (await s.workers.claimTasks({ workerId: "w-progress", jobTypes: ["seam.progress"], maxTasks: 3 })).assignments;
  t.equal(claimed.length, 3);
  const lease = (a: Assignment) => ({ taskId: a.taskId, attempt: a.attempt, leaseToken: a.leaseToken });
  const outcomes = [
    (a: Assignment) => s.workers.completeTask({ completion: { ...lease(a), output: jsonAny("done") } }),
    (a: Assignment) => s.workers.failTask({ failure: { ...lease(a), error: "no", nonRetryable: true } }),
    (a: Assignment) => s.workers.releaseTask({ release: { ...lease(a), reason: "later" } }),
  ];
  for (const [i, a] of claimed.entries()) {
    await s.workers.reportProgress({ progress: { ...lease(a), fraction: 0.5, message: `half of ${a.taskId}` } });
    await outcomes[i]!(a);
  }
  const db = s.server.engine.database.db;
  for (const a of claimed) {
    const events = await db.query<{ kind: string; progress_message: string }>("SELECT kind, progress_message FROM task_event WHERE task_id = $1 ORDER BY seq", [a.taskId]);
    t.ok(events.some((e) => e.kind === "progress" && e.progress_message === `half of ${a.taskId}`), `task ${a.taskId}: the progress was recorded`);
  }
  t.equal(ids.length, 3);
});

t.test("the dispatcher's stop waits for a claim in flight to hand its tasks back, so none is left RUNNING for the sweeper", async (t) => {
  await s.jobTypes.registerJobType({ name: "seam.stop", defaultMaxAttempts: 1 });
  const task = (await s.tasks.submit({ task: { jobType: "seam.stop", input: jsonAny(1) } })).task!;
  const db = s.server.engine.database.db;
  let open: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (open = resolve));
  let claimStarted: () => void = () => undefined;
  const claiming = new Promise<void>((resolve) => (claimStarted = resolve));
  const gated = {
    query: async <Row>(text: string, values?: readonly unknown[]): Promise<Row[]> => {
      if (text.includes("CROSS JOIN LATERAL") && text.includes("SKIP LOCKED")) {
        claimStarted();
        await gate;
      }
      return db.query<Row>(text, values);
    },
  };
  const dispatcher = new Dispatcher({ db: gated, pool: s.server.engine.database.pool, limits: s.server.engine.jobTypes, batcher: new ReportBatcher(db), logger: testLogger(), safetyPollMs: 60_000 });
  const assigned: unknown[] = [];
  const session = dispatcher.open({ namespace: "default", workerId: "w-stop", jobTypes: ["seam.stop"], credits: 1, sink: { assign: (as) => assigned.push(...as), revoke: () => {} } });
  await claiming;
  // The stream ends while its claim runs; then the server stops.
  await dispatcher.close(session, { clean: false, why: "test" });
  const stopped = dispatcher.stop();
  open();
  await stopped;
  const back = await get(task.id);
  t.same([back.state, back.attempts.map((x) => x.outcome), back.maxAttempts], [TaskState.PENDING, [7 /* RELEASED */], 2], "handed back before stop() returned, the attempt not counted");
  t.same(assigned, [], "nothing was sent to the closed session");
});

t.test("looking up job types that do not exist does not grow the job type cache without bound", async (t) => {
  const registry = new JobTypeRegistry(s.server.engine.database.orm, s.server.engine.database.db, 50);
  const found = [];
  for (let i = 0; i < 200; i++) found.push(await registry.find("default", `seam.missing.${i}`));
  t.ok(found.every((x) => x === undefined), "none of them exists");
  await s.jobTypes.registerJobType({ name: "seam.cached" });
  t.ok(await registry.find("default", "seam.cached"));
  const size = (registry as unknown as { cache: Map<string, unknown> }).cache.size;
  t.ok(size <= 50, `the cache holds at most its bound (${size} entries after 201 names)`);
});

t.test("a worker key revoked while its Claim stream holds tasks: the stream ends UNAUTHENTICATED and its session claims nothing more", async (t) => {
  const k = await startTestServer(t);
  const admin = clientsFor(k.url, (await createTestKey(k.server.engine.database, "gamma", ["admin"])).token);
  const workerKey = await createTestKey(k.server.engine.database, "gamma", ["worker"]);
  const worker = clientsFor(k.url, workerKey.token);
  await admin.jobTypes.registerJobType({ name: "seam.revoked", leaseDuration: durationFromMs(2_000), defaultMaxAttempts: 5 });
  const w = openClaimStream(worker.workers, { workerId: "w-revoked", jobTypes: ["seam.revoked"], credits: 2 });
  t.teardown(() => w.abort());
  await w.next("welcome");
  const [x] = (await admin.tasks.submitBatch({ tasks: [{ jobType: "seam.revoked", input: jsonAny(1) }] })).tasks;
  const [a] = (await w.next("assignments")).assignments;
  t.equal(a!.taskId, x!.id);
  await admin.admin.revokeApiKey({ id: workerKey.id });
  const ended = await w.next("assignments", 5_000).then(() => "assigned", (e: Error) => e.message);
  t.match(ended, /unauthenticated.*revoked/, "the stream ends, saying why");
  const sessions = () => [...(k.server.engine.dispatcher as unknown as { sessions: Set<{ workerId: string }> }).sessions].filter((x) => x.workerId === "w-revoked").length;
  const deadline = Date.now() + 5_000;
  while (sessions() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.equal(sessions(), 0, "the dispatcher closed the session");
  const [y] = (await admin.tasks.submitBatch({ tasks: [{ jobType: "seam.revoked", input: jsonAny(2) }] })).tasks;
  t.equal(y!.state, TaskState.PENDING, "a new task is not handed to the revoked worker");
  // The held task keeps its lease (the worker may reconnect with another key and adopt it), then is retried.
  const until = Date.now() + 10_000;
  let back = (await admin.tasks.getTask({ id: x!.id })).task!;
  while (back.state === TaskState.RUNNING && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 100));
    back = (await admin.tasks.getTask({ id: x!.id })).task!;
  }
  t.same([back.state, back.attempts[0]?.outcome], [TaskState.PENDING, 6 /* LOST */], "the revoked worker's attempt ended lost within its lease, to be retried");
  await w.close(); // the request side is still open: end it, as the SDK does, or the server's stop waits for it
});

t.test("a JSON Claim stream gets no input it cannot render when its job type was re-registered with a type the server cannot show", async (t) => {
  await s.jobTypes.registerJobType({ name: "seam.retyped" });
  const json = createClient(WorkerService, createConnectTransport({ baseUrl: s.url, httpVersion: "2", useBinaryFormat: false, jsonOptions: { registry: createRegistry(ValueSchema) } }));
  const w = openClaimStream(json, { workerId: "json-retyped", jobTypes: ["seam.retyped"], credits: 1 });
  t.teardown(() => w.abort());
  await w.next("welcome");
  // The stream was opened while the job type took JSON; now it takes a type known by name only.
  await s.jobTypes.registerJobType({ name: "seam.retyped", inputType: "acme.v1.Opaque" });
  const task = (await s.tasks.submit({ task: { jobType: "seam.retyped", input: { $typeName: "google.protobuf.Any", typeUrl: "type.googleapis.com/acme.v1.Opaque", value: new Uint8Array([8, 1]) } } })).task!;
  const error = await w.next("assignments", 5_000).then(
    () => new Error("the assignment was sent"),
    (e: Error) => e,
  );
  t.match(error.message, /failed_precondition.*is a acme\.v1\.Opaque, which the server cannot render as JSON/);
  const deadline = Date.now() + 5_000;
  let back = await get(task.id);
  while (back.state !== TaskState.PENDING && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
    back = await get(task.id);
  }
  t.same([back.state, back.attempts[0]?.outcome], [TaskState.PENDING, 7 /* RELEASED */], "handed back, the attempt not counted");
});

t.test("a keyed JSON Submit answered with an existing task whose output the server cannot render: FAILED_PRECONDITION, not INTERNAL", async (t) => {
  await s.jobTypes.registerJobType({ name: "seam.keyed.opaque", outputType: "acme.v1.Receipt", dedupWindow: durationFromMs(3_600_000) });
  const post = async (path: string, body: unknown) => {
    const res = await fetch(`${s.url}/${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };
  const spec = { jobType: "seam.keyed.opaque", idempotencyKey: "order-17", input: { "@type": "type.googleapis.com/google.protobuf.Value", value: { order: 17 } } };
  const first = await post("taskwire.v1.TaskService/Submit", { task: spec });
  t.equal(first.status, 200);
  const id = (first.json.task as { id: string }).id;
  const [a] = (await s.workers.claimTasks({ workerId: "bin-worker", jobTypes: ["seam.keyed.opaque"], maxTasks: 1 })).assignments;
  t.equal(a!.taskId, id);
  await s.workers.completeTask({ completion: { taskId: a!.taskId, attempt: a!.attempt, leaseToken: a!.leaseToken, output: { $typeName: "google.protobuf.Any", typeUrl: "type.googleapis.com/acme.v1.Receipt", value: new Uint8Array([8, 1]) } } });
  // The client retries its submit, as idempotency keys are for.
  for (const path of ["taskwire.v1.TaskService/Submit", "taskwire.v1.TaskService/SubmitBatch"]) {
    // The batch also carries a new task: all or nothing, so it is not created either.
    const again = await post(path, path.endsWith("Batch") ? { tasks: [spec, { ...spec, idempotencyKey: "" }] } : { task: spec });
    t.equal(again.status, 400, `${path}: a client-side fix is needed, not a server error`);
    t.match(again.json, { code: "failed_precondition", message: /job type "seam\.keyed\.opaque" is a acme\.v1\.Receipt, which the server cannot render as JSON/ });
  }
  const { tasks } = await s.tasks.listTasks({ jobTypes: ["seam.keyed.opaque"] });
  t.equal(tasks.length, 1, "no second task, and nothing of the refused batch");
});

t.test("schedules over JSON whose task input the server cannot render: FAILED_PRECONDITION, not INTERNAL", async (t) => {
  await s.jobTypes.registerJobType({ name: "seam.sched.opaque", inputType: "acme.v1.Nightly" });
  const input = { $typeName: "google.protobuf.Any" as const, typeUrl: "type.googleapis.com/acme.v1.Nightly", value: new Uint8Array([8, 1]) };
  await s.schedules.createSchedule({ name: "seam-opaque", cron: "0 0 1 1 *", task: { jobType: "seam.sched.opaque", input } });
  const post = async (path: string, body: unknown) => {
    const res = await fetch(`${s.url}/${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };
  for (const [method, body] of [
    ["GetSchedule", { name: "seam-opaque" }],
    ["ListSchedules", {}],
    ["PauseSchedule", { name: "seam-opaque" }],
  ] as const) {
    const answer = await post(`taskwire.v1.ScheduleService/${method}`, body);
    t.match([answer.status, answer.json], [400, { code: "failed_precondition", message: /is a acme\.v1\.Nightly, which the server cannot render as JSON/ }], method);
  }
  t.equal((await s.schedules.getSchedule({ name: "seam-opaque" })).schedule!.paused, false, "a refused pause changed nothing");
  await s.schedules.pauseSchedule({ name: "seam-opaque" });
  const resumed = await post("taskwire.v1.ScheduleService/ResumeSchedule", { name: "seam-opaque" });
  t.match([resumed.status, resumed.json], [400, { code: "failed_precondition" }], "ResumeSchedule");
  t.equal((await s.schedules.getSchedule({ name: "seam-opaque" })).schedule!.paused, true, "a refused resume changed nothing");
  t.equal((await post("taskwire.v1.ScheduleService/DeleteSchedule", { name: "seam-opaque" })).status, 200, "deleting needs no rendering");
});
