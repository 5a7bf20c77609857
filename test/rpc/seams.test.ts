/**
 * Seams between features that were each tested alone: the direct hand-off, batched reports and
 * early credits, tenancy, dependencies and the JSON codec. Each test here once failed.
 */
import { createRegistry } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import t from "tap";
import { TaskState } from "../../src/gen/taskwire/v1/task_pb.js";
import { WorkerService } from "../../src/gen/taskwire/v1/worker_pb.js";
import { openClaimStream } from "../helpers/claim-stream.js";
import { anyJson, jsonAny } from "../helpers/payload.js";
import { startTestServer } from "../helpers/server.js";

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
