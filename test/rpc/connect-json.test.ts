/** Connect JSON over HTTP/1.1 with plain fetch: exactly what curl does. */
import t from "tap";
import { startTestServer } from "../helpers/server.js";

const s = await startTestServer(t);

async function post(path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${s.url}/${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

t.test("register, submit and get with JSON", async (t) => {
  const registered = await post("taskwire.v1.JobTypeService/RegisterJobType", { name: "greet", defaultMaxAttempts: 5 });
  t.equal(registered.status, 200);
  t.match(registered.json, { jobType: { name: "greet", defaultMaxAttempts: 5 }, created: true });

  const submitted = await post("taskwire.v1.TaskService/Submit", {
    task: { jobType: "greet", input: { "@type": "type.googleapis.com/google.protobuf.Value", value: { name: "Ada" } }, priority: 0 },
  });
  t.equal(submitted.status, 200);
  const task = submitted.json.task as { id: string; state: string; maxAttempts: number; input: unknown };
  t.equal(task.state, "TASK_STATE_PENDING");
  t.equal(task.maxAttempts, 5, "the job type's default applies when unset");

  const got = await post("taskwire.v1.TaskService/GetTask", { id: task.id });
  t.equal(got.status, 200);
  t.match(got.json, { task: { id: task.id, jobType: "greet", state: "TASK_STATE_PENDING", queuePosition: "0", input: { "@type": "type.googleapis.com/google.protobuf.Value", value: { name: "Ada" } } } });
});

t.test("errors are Connect JSON errors with the right HTTP status", async (t) => {
  const missing = await post("taskwire.v1.TaskService/GetTask", { id: "123456" });
  t.equal(missing.status, 404);
  t.match(missing.json, { code: "not_found", message: /task "123456" does not exist/ });
  const bad = await post("taskwire.v1.TaskService/Submit", { task: { jobType: "greet" } });
  t.equal(bad.status, 400);
  t.match(bad.json, { code: "invalid_argument", message: /task\.input: is required/ });
  const unknownField = await post("taskwire.v1.TaskService/Submit", { task: { jobType: "greet", colour: "red" } });
  t.equal(unknownField.status, 400, "malformed JSON is INVALID_ARGUMENT, not INTERNAL");
});

t.test("GET /healthz", async (t) => {
  const res = await fetch(`${s.url}/healthz`);
  t.equal(res.status, 200);
  t.same(await res.json(), { status: "ok" });
});

t.test("typed payloads: rendered as JSON with descriptors, FAILED_PRECONDITION (not INTERNAL) without", async (t) => {
  const { anyPack, StringValueSchema, FileDescriptorSetSchema, file_google_protobuf_wrappers } = await import("@bufbuild/protobuf/wkt");
  const { create } = await import("@bufbuild/protobuf");
  // Without descriptors the server knows the type's name only.
  await s.jobTypes.registerJobType({ name: "opaque", inputType: "acme.v1.Thing" });
  const opaque = (await s.tasks.submit({ task: { jobType: "opaque", input: { $typeName: "google.protobuf.Any", typeUrl: "type.googleapis.com/acme.v1.Thing", value: new Uint8Array([8, 1]) } } })).task!;
  const got = await post("taskwire.v1.TaskService/GetTask", { id: opaque.id });
  t.equal(got.status, 400);
  t.match(got.json, { code: "failed_precondition", message: /is a acme\.v1\.Thing, which the server cannot render as JSON: register the job type with descriptors/ });
  const claim = await post("taskwire.v1.WorkerService/ClaimTasks", { workerId: "json-worker", jobTypes: ["opaque"], maxTasks: 1 });
  t.equal(claim.status, 400);
  t.equal((await s.tasks.getTask({ id: opaque.id })).task!.state, 2 /* PENDING */, "nothing was claimed");
  t.equal((await s.tasks.getTask({ id: opaque.id })).task!.id, opaque.id, "the binary protocol still reads it");

  // With descriptors, JSON clients see the message as JSON.
  const descriptors = create(FileDescriptorSetSchema, { file: [file_google_protobuf_wrappers.proto] });
  await s.jobTypes.registerJobType({ name: "described", inputType: "google.protobuf.StringValue", descriptors });
  const described = (await s.tasks.submit({ task: { jobType: "described", input: anyPack(StringValueSchema, create(StringValueSchema, { value: "hi" })) } })).task!;
  const shown = await post("taskwire.v1.TaskService/GetTask", { id: described.id });
  t.equal(shown.status, 200);
  t.match(shown.json, { task: { input: { "@type": "type.googleapis.com/google.protobuf.StringValue", value: "hi" } } });
});

t.test("a JSON ClaimTasks whose task's dependency has an output the server cannot render: FAILED_PRECONDITION, the task handed back", async (t) => {
  await s.jobTypes.registerJobType({ name: "opaque.out", outputType: "acme.v1.Result" });
  await s.jobTypes.registerJobType({ name: "after.opaque" });
  const parent = (await s.tasks.submit({ task: { jobType: "opaque.out", input: { $typeName: "google.protobuf.Any", typeUrl: "type.googleapis.com/google.protobuf.Value", value: new Uint8Array() } } })).task!;
  const [a] = (await s.workers.claimTasks({ workerId: "bin-worker", jobTypes: ["opaque.out"], maxTasks: 1 })).assignments;
  await s.workers.completeTask({ completion: { taskId: a!.taskId, attempt: a!.attempt, leaseToken: a!.leaseToken, output: { $typeName: "google.protobuf.Any", typeUrl: "type.googleapis.com/acme.v1.Result", value: new Uint8Array([8, 1]) } } });
  const child = (await post("taskwire.v1.TaskService/Submit", { task: { jobType: "after.opaque", dependsOn: [parent.id], input: { "@type": "type.googleapis.com/google.protobuf.Value", value: 1 } } })).json.task as { id: string; state: string };
  t.equal(child.state, "TASK_STATE_PENDING");
  const claim = await post("taskwire.v1.WorkerService/ClaimTasks", { workerId: "json-worker", jobTypes: ["after.opaque"], maxTasks: 1 });
  t.equal(claim.status, 400);
  t.match(claim.json, { code: "failed_precondition", message: /job type "opaque\.out" is a acme\.v1\.Result, which the server cannot render as JSON/ });
  const back = (await s.tasks.getTask({ id: child.id })).task!;
  t.same([back.state, back.attempts[0]?.outcome, back.maxAttempts], [2 /* PENDING */, 7 /* RELEASED */, 4], "handed back without counting the attempt");
  const binary = (await s.workers.claimTasks({ workerId: "bin-worker", jobTypes: ["after.opaque"], maxTasks: 1 })).assignments;
  t.equal(binary[0]!.parents[0]!.output?.typeUrl, "type.googleapis.com/acme.v1.Result", "a binary worker gets it with the output");
});

t.test("strict JSON: a misspelt or unknown field is refused, naming it, and writes nothing", async (t) => {
  const count = async () => Number((await s.server.engine.database.db.query<{ n: string }>("SELECT count(*)::text AS n FROM task"))[0]!.n);
  const before = await count();
  const typo = await post("taskwire.v1.TaskService/Submit", { task: { jobType: "greet", input: { "@type": "type.googleapis.com/google.protobuf.Value", value: 1 } }, waitTimout: "1s" });
  t.match(typo, { status: 400, json: { code: "invalid_argument", message: /key "waitTimout" is unknown/ } });
  const nested = await post("taskwire.v1.TaskService/Submit", { task: { jobType: "greet", colour: "red", input: { "@type": "type.googleapis.com/google.protobuf.Value", value: 1 } } });
  t.match(nested, { status: 400, json: { code: "invalid_argument", message: /key "colour" is unknown/ } }, "in a nested message too (typed payloads: test/rpc/json-namespaces.test.ts)");
  t.equal(await count(), before, "nothing was written");
});
