/**
 * Limits meet dependencies: a task that waited for its dependencies while its job type got limits
 * must still be claimable once it becomes PENDING (only tasks marked `limited` are claimed for a
 * job type with limits; migration 0041 marks it as it leaves WAITING), and still obeys them.
 */
import t from "tap";
import { TaskState } from "../../src/gen/taskwire/v1/task_pb.js";
import { jsonAny } from "../helpers/payload.js";
import { startTestServer } from "../helpers/server.js";

const s = await startTestServer(t, { safetyPollMs: 200 });
const db = s.server.engine.database.db;

const claim = async (jobType: string, max = 10) => (await s.workers.claimTasks({ workerId: "w-limits-deps", jobTypes: [jobType], maxTasks: max })).assignments;
const complete = (a: { taskId: string; attempt: number; leaseToken: string }) =>
  s.workers.completeTask({ completion: { taskId: a.taskId, attempt: a.attempt, leaseToken: a.leaseToken, output: jsonAny("ok") } });

t.test("a child that waited while its job type got a limit is claimed once its parent succeeds, within the limit", async (t) => {
  await s.jobTypes.registerJobType({ name: "ld.parent" });
  await s.jobTypes.registerJobType({ name: "ld.child" });
  const parent = (await s.tasks.submit({ task: { jobType: "ld.parent", input: jsonAny(0) } })).task!;
  const children = (await s.tasks.submitBatch({ tasks: [1, 2, 3].map((i) => ({ jobType: "ld.child", input: jsonAny(i), dependsOn: [parent.id] })) })).tasks;
  t.same(children.map((c) => c.state), [TaskState.WAITING, TaskState.WAITING, TaskState.WAITING]);
  const marked = async () => (await db.query<{ limited: boolean }>("SELECT limited FROM task WHERE id = ANY($1::bigint[]) ORDER BY id", [children.map((c) => c.id)])).map((r) => r.limited);
  t.same(await marked(), [false, false, false], "submitted before the job type had limits: not marked");

  // Now the child job type gets a limit, while its tasks wait.
  await s.jobTypes.registerJobType({ name: "ld.child", maxRunning: 2 });
  const [p] = await claim("ld.parent");
  await complete(p!);
  t.same(await marked(), [true, true, true], "marked as they became PENDING");

  let claimed: Awaited<ReturnType<typeof claim>> = [];
  const deadline = Date.now() + 10_000;
  while (claimed.length === 0) {
    if (Date.now() > deadline) throw new Error("the unblocked children were never claimed");
    claimed = await claim("ld.child");
  }
  t.equal(claimed.length, 2, "claimed, and no more than max_running");
  t.same(await claim("ld.child"), [], "the third waits for a free slot");
  await complete(claimed[0]!);
  const third = await claim("ld.child");
  t.equal(third.length, 1, "a finished one frees a slot for the third");
});
