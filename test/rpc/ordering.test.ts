/** Priorities and delays under concurrency: higher priority first, FIFO within a priority, run_at respected. */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import t from "tap";
import { createClient, createWorker, defineJob } from "../../src/sdk/index.js";
import { jsonAny } from "../helpers/payload.js";
import { startTestServer } from "../helpers/server.js";

// No safety poll to speak of: a delayed task must be picked up by the dispatcher's own timer.
const s = await startTestServer(t, { safetyPollMs: 60_000 });
const b = await startTestServer(t, { safetyPollMs: 60_000, databaseUrl: s.databaseUrl });
const db = s.server.engine.database.db;

/** Submits tasks in batches (in order) and returns them with their expected claim rank. */
async function submitMixed(jobType: string, priorities: number[]): Promise<Map<string, number>> {
  const submitted: { id: string; priority: number }[] = [];
  for (let i = 0; i < priorities.length; i += 10) {
    const chunk = priorities.slice(i, i + 10);
    const { tasks } = await s.tasks.submitBatch({ tasks: chunk.map((priority, j) => ({ jobType, input: jsonAny(i + j), priority })) });
    submitted.push(...tasks.map((x) => ({ id: x.id, priority: x.priority })));
  }
  // The claim order: priority descending, then submission (run_at, then id) ascending.
  const ordered = [...submitted].sort((x, y) => y.priority - x.priority || (BigInt(x.id) < BigInt(y.id) ? -1 : 1));
  return new Map(ordered.map((x, rank) => [x.id, rank]));
}

t.test("six workers claiming concurrently (on two replicas): a later claim never gets a better task than an earlier one", async (t) => {
  await s.jobTypes.registerJobType({ name: "ordered" });
  const levels = [-5, 0, 5, 10];
  const rank = await submitMixed("ordered", Array.from({ length: 240 }, (_, i) => levels[(i * 7) % 4]!));
  let clock = 0;
  const claims: { start: number; end: number; ranks: number[] }[] = [];
  const worker = async (w: number) => {
    const server = w % 2 === 0 ? s : b;
    for (;;) {
      const start = ++clock;
      const { assignments } = await server.workers.claimTasks({ workerId: `claimer-${w}`, jobTypes: ["ordered"], maxTasks: 1 + (w % 3) });
      const end = ++clock;
      if (assignments.length === 0) return;
      claims.push({ start, end, ranks: assignments.map((a) => rank.get(a.taskId)!) });
    }
  };
  await Promise.all(Array.from({ length: 6 }, (_, w) => worker(w)));

  const all = claims.flatMap((c) => c.ranks);
  t.equal(all.length, 240, "every task claimed");
  t.equal(new Set(all).size, 240, "none twice");
  t.ok(claims.every((c) => c.ranks.every((r, i) => i === 0 || r > c.ranks[i - 1]!)), "each claim's tasks come in claim order");
  let ordered = 0;
  let violations = 0;
  for (const earlier of claims) {
    for (const later of claims) {
      if (earlier.end >= later.start) continue; // overlapping claims may split the best tasks between them
      ordered++;
      if (Math.min(...later.ranks) < Math.max(...earlier.ranks)) violations++;
    }
  }
  t.ok(ordered > 1_000, `${ordered} pairs of claims where one finished before the other started`);
  t.equal(violations, 0, "in each, the later claim's best task ranks after the earlier claim's worst (priority first, FIFO within it)");
  t.ok(claims.length > 50, `${claims.length} claims`);
});

t.test("over the Claim stream, one worker runs tasks in priority order, FIFO within a priority", async (t) => {
  await s.jobTypes.registerJobType({ name: "ordered.stream" });
  const rank = await submitMixed("ordered.stream", [0, 3, 0, -2, 3, 9, 0, -2, 9, 3, 0, 9, -2, 3, 0]);
  const seen: number[] = [];
  const job = defineJob({ name: "ordered.stream", input: "json", output: "json", handler: async (_input, ctx) => void seen.push(rank.get(ctx.taskId)!) });
  const worker = createWorker({ baseUrl: s.url, jobs: [job], concurrency: 1, workerId: "stream-ordered" });
  t.teardown(() => worker.stop());
  await worker.start();
  const deadline = Date.now() + 10_000;
  while (seen.length < rank.size && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
  t.same(seen, [...rank.values()].sort((x, y) => x - y), "exactly the claim order");
});

t.test("run_at in the future: not claimable before, run soon after (woken by the dispatcher's timer)", async (t) => {
  await s.jobTypes.registerJobType({ name: "delayed.unary" });
  await s.jobTypes.registerJobType({ name: "delayed.stream" });
  const runAt = new Date(Date.now() + 1_500);
  const later = (await s.tasks.submit({ task: { jobType: "delayed.unary", input: jsonAny("later"), runAt: timestampFromDate(runAt) } })).task!;
  const now = (await s.tasks.submit({ task: { jobType: "delayed.unary", input: jsonAny("now"), priority: -1 } })).task!;
  const early = (await s.workers.claimTasks({ workerId: "early", jobTypes: ["delayed.unary"], maxTasks: 10 })).assignments;
  t.same(early.map((a) => a.taskId), [now.id], "before run_at only the undelayed task is claimable, although the delayed one has higher priority");

  const started = new Map<string, number>();
  const job = defineJob({ name: "delayed.stream", input: "json", output: "json", handler: async (_input, ctx) => void started.set(ctx.taskId, Date.now()) });
  const worker = createWorker({ baseUrl: b.url, jobs: [job], concurrency: 4, workerId: "stream-delayed" });
  t.teardown(() => worker.stop());
  await worker.start();
  const client = createClient({ baseUrl: s.url });
  t.teardown(() => client.close());
  const delays = [600, 1_200, 1_800];
  const tasks = await Promise.all(delays.map((ms) => client.submit(job, { ms }, { runAt: new Date(Date.now() + ms) })));
  const deadline = Date.now() + 10_000;
  while (started.size < tasks.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.equal(started.size, tasks.length, "every delayed task ran, on a replica other than the one it was submitted to");
  const rows = await db.query<{ id: string; run_at: Date | string; started_at: Date | string }>(
    "SELECT t.id::text AS id, t.run_at, a.started_at FROM task t JOIN task_attempt a ON a.task_id = t.id AND a.number = 1 WHERE t.id = ANY($1::bigint[])",
    [tasks.map((x) => x.id)],
  );
  for (const row of rows) {
    const lag = new Date(row.started_at).getTime() - new Date(row.run_at).getTime();
    t.ok(lag >= 0, `task ${row.id}: claimed ${lag} ms after its run_at, not before`);
    t.ok(lag < 1_500, `task ${row.id}: claimed soon after its run_at (${lag} ms), long before the 60 s safety poll`);
  }
  await new Promise((r) => setTimeout(r, Math.max(0, runAt.getTime() - Date.now()) + 50));
  const due = (await s.workers.claimTasks({ workerId: "late", jobTypes: ["delayed.unary"], maxTasks: 10 })).assignments;
  t.same(due.map((a) => a.taskId), [later.id], "after run_at the delayed unary task is claimable");
});
