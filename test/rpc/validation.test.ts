/** Bad input: each answered with its exact code and a message naming the field and what is allowed. */
import { create } from "@bufbuild/protobuf";
import { anyPack, DurationSchema, StringValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import t from "tap";
import { rejection } from "../helpers/rejection.js";
import { TaskSpecSchema, type TaskSpec } from "../../src/gen/taskwire/v1/task_pb.js";
import { jsonAny } from "../helpers/payload.js";
import { startTestServer } from "../helpers/server.js";

const s = await startTestServer(t);
await s.jobTypes.registerJobType({ name: "email.send" });
await s.jobTypes.registerJobType({ name: "typed.job", inputType: "google.protobuf.StringValue" });

const spec = (fields: Partial<Omit<TaskSpec, "$typeName">>) =>
  create(TaskSpecSchema, { jobType: "email.send", input: jsonAny({ to: "a@example.com" }), ...fields });

const cases: { name: string; call: () => Promise<unknown>; code: Code; message: RegExp }[] = [
  { name: "unknown job type (NOT_FOUND, as another namespace's would be)", call: () => s.tasks.submit({ task: spec({ jobType: "nope" }) }), code: Code.NotFound, message: /task\.job_type: job type "nope" is not registered/ },
  { name: "empty job type name", call: () => s.tasks.submit({ task: spec({ jobType: "" }) }), code: Code.InvalidArgument, message: /task\.job_type: must not be empty; use 1 to 128 characters/ },
  { name: "malformed job type name", call: () => s.tasks.submit({ task: spec({ jobType: "9 lives!" }) }), code: Code.InvalidArgument, message: /task\.job_type: "9 lives!" is not a valid name/ },
  { name: "malformed name at registration", call: () => s.jobTypes.registerJobType({ name: "has space" }), code: Code.InvalidArgument, message: /^\[invalid_argument\] name: "has space" is not a valid name/ },
  { name: "payload of the wrong type (schemaless job)", call: () => s.tasks.submit({ task: spec({ input: anyPack(StringValueSchema, create(StringValueSchema, { value: "x" })) }) }), code: Code.InvalidArgument, message: /task\.input: is a google\.protobuf\.StringValue but job type "email\.send" is schemaless/ },
  { name: "payload of the wrong type (typed job)", call: () => s.tasks.submit({ task: spec({ jobType: "typed.job" }) }), code: Code.InvalidArgument, message: /task\.input: is a google\.protobuf\.Value but job type "typed\.job" takes google\.protobuf\.StringValue/ },
  { name: "missing payload", call: () => s.tasks.submit({ task: spec({ input: undefined }) }), code: Code.InvalidArgument, message: /task\.input: is required/ },
  { name: "priority out of range", call: () => s.tasks.submit({ task: spec({ priority: 5000 }) }), code: Code.InvalidArgument, message: /task\.priority: is 5000; allowed: -1000 to 1000/ },
  { name: "max_attempts 0 is a value, and an invalid one", call: () => s.tasks.submit({ task: spec({ maxAttempts: 0 }) }), code: Code.InvalidArgument, message: /task\.max_attempts: is 0; allowed: 1 to 1000/ },
  { name: "timeout of zero", call: () => s.tasks.submit({ task: spec({ timeout: create(DurationSchema, { seconds: 0n }) }) }), code: Code.InvalidArgument, message: /task\.timeout: is 0 ms; allowed: 1 ms/ },
  { name: "page size over the cap", call: () => s.tasks.listTasks({ pageSize: 1001 }), code: Code.InvalidArgument, message: /page_size: is 1001; allowed: 1 to 1000/ },
  { name: "garbage page token", call: () => s.tasks.listTasks({ pageToken: "not-a-token" }), code: Code.InvalidArgument, message: /page_token: is not a token this server issued/ },
  { name: "batch over 1,000", call: () => s.tasks.submitBatch({ tasks: Array.from({ length: 1001 }, () => spec({})) }), code: Code.InvalidArgument, message: /tasks: has 1001 tasks; the limit is 1000 per call/ },
  { name: "empty batch", call: () => s.tasks.submitBatch({ tasks: [] }), code: Code.InvalidArgument, message: /tasks: is empty/ },
  { name: "unknown task id", call: () => s.tasks.getTask({ id: "424242" }), code: Code.NotFound, message: /task "424242" does not exist/ },
  { name: "malformed task id", call: () => s.tasks.getTask({ id: "abc" }), code: Code.InvalidArgument, message: /id: "abc" is not a task id/ },
  { name: "cancel of an unknown task", call: () => s.tasks.cancel({ id: "424242" }), code: Code.NotFound, message: /task "424242" does not exist/ },
  { name: "unknown job type", call: () => s.jobTypes.getJobType({ name: "nope" }), code: Code.NotFound, message: /job type "nope" is not registered in namespace "default"/ },
  { name: "claim for an unregistered job type", call: () => s.workers.claimTasks({ workerId: "w1", jobTypes: ["nope"], maxTasks: 1 }), code: Code.NotFound, message: /job_types: job type "nope" is not registered/ },
  { name: "claim of zero tasks", call: () => s.workers.claimTasks({ workerId: "w1", jobTypes: ["email.send"], maxTasks: 0 }), code: Code.InvalidArgument, message: /max_tasks: is 0; allowed: 1 to 1000/ },
  { name: "malformed lease token", call: () => s.workers.completeTask({ completion: { taskId: "1", attempt: 1, leaseToken: "x" } }), code: Code.InvalidArgument, message: /lease_token: must be the lease_token of the assignment/ },
];

for (const c of cases) {
  t.test(c.name, async (t) => {
    const error = await rejection(c.call);
    t.equal(Code[error.code], Code[c.code], "code");
    t.match(error.message, c.message, "message");
  });
}

t.test("a rejected batch writes nothing (all or nothing)", async (t) => {
  const before = (await s.tasks.listTasks({})).totalCount;
  const error = await rejection(() => s.tasks.submitBatch({ tasks: [spec({}), spec({}), spec({ jobType: "nope" })] }));
  t.equal(error.code, Code.NotFound, "an unknown job type is NOT_FOUND");
  t.match(error.message, /tasks\[2\]\.job_type/);
  t.equal((await s.tasks.listTasks({})).totalCount, before, "no task was created");
});

t.test("a completion with a wrong lease token is rejected and changes nothing", async (t) => {
  const { task } = await s.tasks.submit({ task: spec({}) });
  const [assignment] = (await s.workers.claimTasks({ workerId: "w1", jobTypes: ["email.send"], maxTasks: 1 })).assignments;
  t.equal(assignment?.taskId, task?.id);
  const error = await rejection(() =>
    s.workers.completeTask({ completion: { taskId: assignment!.taskId, attempt: 1, leaseToken: "00000000-0000-4000-8000-000000000000", output: jsonAny(1) } }),
  );
  t.equal(Code[error.code], Code[Code.FailedPrecondition]);
  t.match(error.message, /the lease token is not the one issued for this attempt/);
  const after = (await s.tasks.getTask({ id: task!.id })).task!;
  t.equal(after.state, 3 /* RUNNING */, "still running");
  t.equal(after.output, undefined, "no output recorded");
  // The real holder can still complete it.
  await s.workers.completeTask({ completion: { taskId: assignment!.taskId, attempt: 1, leaseToken: assignment!.leaseToken, output: jsonAny("ok") } });
  t.equal((await s.tasks.getTask({ id: task!.id })).task!.state, 4 /* SUCCEEDED */);
});
