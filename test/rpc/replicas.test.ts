/** Several replicas on one database: the sweeper runs on each without double-handling a task. */
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import t from "tap";
import type { SweptTask } from "../../src/store/sql/lease-sweep-expired.js";
import { jsonAny } from "../helpers/payload.js";
import { startTestServer } from "../helpers/server.js";

const a = await startTestServer(t, { sweepIntervalMs: 50 });
const b = await startTestServer(t, { sweepIntervalMs: 50, databaseUrl: a.databaseUrl });

t.test("two sweepers, 300 expired leases: each taken back exactly once", async (t) => {
  await a.jobTypes.registerJobType({ name: "ghosted", leaseDuration: durationFromMs(1_000), defaultMaxAttempts: 2 });
  await a.tasks.submitBatch({ tasks: Array.from({ length: 300 }, (_, i) => ({ jobType: "ghosted", input: jsonAny(i) })) });
  const sweptBy = { a: [] as SweptTask[], b: [] as SweptTask[] };
  a.server.engine.sweeper.on("sweeper:swept", (rows) => sweptBy.a.push(...rows));
  b.server.engine.sweeper.on("sweeper:swept", (rows) => sweptBy.b.push(...rows));
  // A unary worker claims everything and never heartbeats.
  let claimed = 0;
  for (let i = 0; i < 3; i++) claimed += (await a.workers.claimTasks({ workerId: "ghost", jobTypes: ["ghosted"], maxTasks: 100 })).assignments.length;
  t.equal(claimed, 300);
  const deadline = Date.now() + 10_000;
  while (sweptBy.a.length + sweptBy.b.length < 300 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const ids = [...sweptBy.a, ...sweptBy.b].map((x) => x.id);
  t.equal(ids.length, 300, `swept ${sweptBy.a.length} on replica A and ${sweptBy.b.length} on replica B`);
  t.equal(new Set(ids).size, 300, "no task swept twice");
  const [row] = await a.server.engine.database.db.query<{ tasks: string; attempts: string; lost: string }>(
    `SELECT count(DISTINCT t.id)::text AS tasks, count(*)::text AS attempts, count(*) FILTER (WHERE a.outcome = 'lost')::text AS lost
     FROM task t JOIN task_attempt a ON a.task_id = t.id WHERE t.job_type = 'ghosted' AND t.state = 'pending'`,
  );
  t.same(row, { tasks: "300", attempts: "300", lost: "300" }, "every task pending again with one lost attempt");
});
