/**
 * The round trip from a stock gRPC stack: @grpc/grpc-js with the .proto files loaded at run time by
 * @grpc/proto-loader, no generated TypeScript. If this works, any language's gRPC can use Taskwire.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import t from "tap";
import { startTestServer } from "../helpers/server.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../proto");
const definition = protoLoader.loadSync(["taskwire/v1/task.proto", "taskwire/v1/worker.proto", "taskwire/v1/job_type.proto", "grpc/health/v1/health.proto"], {
  includeDirs: [root],
  keepCase: true,
  enums: String,
  longs: String,
  defaults: true,
  oneofs: true,
});
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const loaded = grpc.loadPackageDefinition(definition) as any;
const v1 = loaded.taskwire.v1;

/** google.protobuf.Value{string_value: s}, encoded by hand as any language could (field 3, length-delimited). */
function stringValue(s: string): Buffer {
  const bytes = Buffer.from(s, "utf8");
  return Buffer.concat([Buffer.from([0x1a, bytes.length]), bytes]);
}
const VALUE_URL = "type.googleapis.com/google.protobuf.Value";

function unary<Res>(client: grpc.Client, method: string, request: object): Promise<Res> {
  return new Promise((resolve, reject) =>
    (client as unknown as Record<string, (r: object, cb: (e: grpc.ServiceError | null, r: Res) => void) => void>)[method]!(request, (error, response) =>
      error ? reject(error) : resolve(response),
    ),
  );
}

const s = await startTestServer(t);
const address = s.url.replace("http://", "");
const credentials = grpc.credentials.createInsecure();
const jobTypes = new v1.JobTypeService(address, credentials);
const tasks = new v1.TaskService(address, credentials);
const workers = new v1.WorkerService(address, credentials);
const health = new loaded.grpc.health.v1.Health(address, credentials);
t.teardown(() => {
  for (const c of [jobTypes, tasks, workers, health]) c.close();
});

t.test("health check answers SERVING", async (t) => {
  const res = await unary<{ status: string }>(health, "Check", { service: "" });
  t.equal(res.status, "SERVING");
});

t.test("register, submit, claim on the stream, complete, get", async (t) => {
  await unary(jobTypes, "RegisterJobType", { name: "interop.echo" });
  const submitted = await unary<{ task: { id: string; state: string } }>(tasks, "Submit", {
    task: { job_type: "interop.echo", input: { type_url: VALUE_URL, value: stringValue("Ada") } },
  });
  t.equal(submitted.task.state, "TASK_STATE_PENDING");

  const call = workers.Claim() as grpc.ClientDuplexStream<object, Record<string, unknown> & { message: string }>;
  const results: unknown[] = [];
  const ended = new Promise<void>((resolve, reject) => {
    call.on("data", (response) => {
      const r = response as Record<string, unknown> & { message: string };
      if (r.message === "assignments") {
        const batch = r.assignments as { assignments: { task_id: string; attempt: number; lease_token: string; input: { value: Buffer } }[] };
        for (const a of batch.assignments) {
          const name = a.input.value.subarray(2).toString("utf8");
          call.write({ complete: { task_id: a.task_id, attempt: a.attempt, lease_token: a.lease_token, output: { type_url: VALUE_URL, value: stringValue(`Hello, ${name}!`) } } });
        }
      } else if (r.message === "report_result") {
        results.push(r.report_result);
        call.end();
      }
    });
    call.on("end", resolve);
    call.on("error", reject);
  });
  call.write({ hello: { worker_id: "grpc-js", job_types: ["interop.echo"], credits: 1 } });
  await ended;
  t.match(results, [{ task_id: submitted.task.id, accepted: true }]);

  const got = await unary<{ task: { state: string; output: { type_url: string; value: Buffer }; attempts: { number: number; worker_id: string; outcome: string }[] } }>(tasks, "GetTask", { id: submitted.task.id });
  t.equal(got.task.state, "TASK_STATE_SUCCEEDED");
  t.equal(got.task.output.type_url, VALUE_URL);
  t.same(got.task.output.value, stringValue("Hello, Ada!"));
  t.match(got.task.attempts, [{ number: 1, worker_id: "grpc-js", outcome: "ATTEMPT_OUTCOME_SUCCEEDED" }]);
});

t.test("errors carry gRPC status codes and messages", async (t) => {
  const error = await unary(tasks, "GetTask", { id: "999999" }).then(
    () => undefined,
    (e: grpc.ServiceError) => e,
  );
  t.equal(error?.code, grpc.status.NOT_FOUND);
  t.match(error?.details, /task "999999" does not exist/);
});
