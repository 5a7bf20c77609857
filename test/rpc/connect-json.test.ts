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
