/** ListTasks: filters do what the API says, pages cover everything once, totals are exact. */
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import t from "tap";
import { TaskState, type Task } from "../../src/gen/taskwire/v1/task_pb.js";
import { jsonAny } from "../helpers/payload.js";
import { startTestServer } from "../helpers/server.js";

const s = await startTestServer(t);
await s.jobTypes.registerJobType({ name: "alpha" });
await s.jobTypes.registerJobType({ name: "beta" });

const alpha = (await s.tasks.submitBatch({ tasks: Array.from({ length: 25 }, (_, i) => ({ jobType: "alpha", input: jsonAny(i) })) })).tasks;
const middle = Date.now();
await new Promise((r) => setTimeout(r, 20));
const beta = (await s.tasks.submitBatch({ tasks: Array.from({ length: 10 }, (_, i) => ({ jobType: "beta", input: jsonAny(i) })) })).tasks;
// 3 alpha tasks run by worker w1 (one completed), 2 cancelled.
const claimed = (await s.workers.claimTasks({ workerId: "w1", jobTypes: ["alpha"], maxTasks: 3 })).assignments;
await s.workers.completeTask({ completion: { taskId: claimed[0]!.taskId, attempt: 1, leaseToken: claimed[0]!.leaseToken } });
await s.tasks.cancel({ id: beta[0]!.id });
await s.tasks.cancel({ id: beta[1]!.id });

async function all(request: Parameters<typeof s.tasks.listTasks>[0]): Promise<{ tasks: Task[]; total: bigint; pages: number }> {
  const tasks: Task[] = [];
  let pageToken = "";
  let pages = 0;
  let total = -1n;
  do {
    const page = await s.tasks.listTasks({ ...request, pageToken });
    tasks.push(...page.tasks);
    total = page.totalCount;
    pageToken = page.nextPageToken;
    pages += 1;
  } while (pageToken !== "");
  return { tasks, total, pages };
}

t.test("batch order is kept", async (t) => {
  t.same(alpha.map((x) => Number(x.id)), alpha.map((x) => Number(x.id)).sort((a, b) => a - b));
});

t.test("no filter: everything, newest first, in pages", async (t) => {
  const { tasks, total, pages } = await all({ pageSize: 7 });
  t.equal(total, 35n);
  t.equal(tasks.length, 35);
  t.equal(pages, 5);
  t.equal(new Set(tasks.map((x) => x.id)).size, 35, "no task twice");
  t.same(tasks.map((x) => x.id), [...alpha, ...beta].map((x) => x.id).reverse());
});

t.test("several states at once, with an exact total", async (t) => {
  const { tasks, total } = await all({ states: [TaskState.RUNNING, TaskState.CANCELLED], pageSize: 1 });
  t.equal(total, 4n);
  t.same(new Set(tasks.map((x) => x.state)), new Set([TaskState.RUNNING, TaskState.CANCELLED]));
  t.equal(tasks.filter((x) => x.state === TaskState.RUNNING).length, 2);
});

t.test("job types, worker id and created-time range", async (t) => {
  t.equal((await s.tasks.listTasks({ jobTypes: ["beta"] })).totalCount, 10n);
  t.equal((await s.tasks.listTasks({ jobTypes: ["alpha", "beta"] })).totalCount, 35n);
  const byWorker = await s.tasks.listTasks({ workerId: "w1" });
  t.equal(byWorker.totalCount, 3n);
  t.same(new Set(byWorker.tasks.map((x) => x.id)), new Set(claimed.map((x) => x.taskId)));
  t.equal((await s.tasks.listTasks({ createdAfter: timestampFromMs(middle) })).totalCount, 10n);
  t.equal((await s.tasks.listTasks({ createdBefore: timestampFromMs(middle) })).totalCount, 25n);
  t.equal((await s.tasks.listTasks({ jobTypes: ["alpha"], states: [TaskState.SUCCEEDED] })).totalCount, 1n);
});

t.test("a page token only works with the filters it was issued for", async (t) => {
  const first = await s.tasks.listTasks({ pageSize: 2, jobTypes: ["alpha"] });
  t.not(first.nextPageToken, "");
  const error = await s.tasks.listTasks({ pageSize: 2, jobTypes: ["beta"], pageToken: first.nextPageToken }).then(
    () => undefined,
    (e: unknown) => ConnectError.from(e),
  );
  t.equal(error?.code, Code.InvalidArgument);
  t.match(error?.message, /page_token: was issued for different filters/);
});

t.test("queue position comes from the claim order", async (t) => {
  await s.jobTypes.registerJobType({ name: "queue" });
  const low = (await s.tasks.submit({ task: { jobType: "queue", input: jsonAny(0), priority: 0 } })).task!;
  const high = (await s.tasks.submit({ task: { jobType: "queue", input: jsonAny(1), priority: 5 } })).task!;
  const low2 = (await s.tasks.submit({ task: { jobType: "queue", input: jsonAny(2), priority: 0 } })).task!;
  const position = async (id: string) => (await s.tasks.getTask({ id })).task!.queuePosition;
  t.equal(await position(high.id), 0n);
  t.equal(await position(low.id), 1n);
  t.equal(await position(low2.id), 2n);
  const [first] = (await s.workers.claimTasks({ workerId: "w2", jobTypes: ["queue"], maxTasks: 1 })).assignments;
  t.equal(first!.taskId, high.id, "the claim takes the highest priority first");
  t.equal(await position(high.id), undefined, "no position once running");
  t.equal(await position(low.id), 0n);
});
