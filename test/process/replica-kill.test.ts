/**
 * Two server processes on one database, workers on both, one replica killed with SIGKILL under
 * load: every task still ends exactly once (one succeeded attempt each).
 */
import type { ChildProcess } from "node:child_process";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import t from "tap";
import { TaskState } from "../../src/gen/taskwire/v1/task_pb.js";
import { createClient, createWorker, defineJob, type Worker } from "../../src/sdk/index.js";
import { runCli, startedUrl } from "../helpers/cli-server.js";
import { createTestDatabase } from "../helpers/database.js";

const { url: databaseUrl, database } = await createTestDatabase(t);

/** Starts `taskwire server start` as its own process and resolves with its URL. */
async function startReplica(): Promise<{ url: string; child: ChildProcess }> {
  const replica = runCli(["server", "start", "--database-url", databaseUrl, "--port", "0", "--log-level", "info"], { streams: ["stdout"] });
  return { url: await startedUrl(t, replica), child: replica.child };
}

t.test("kill one of two replicas under load: every task ends SUCCEEDED exactly once", async (t) => {
  const [a, b] = await Promise.all([startReplica(), startReplica()]);
  const client = createClient({ baseUrl: b.url });
  t.teardown(() => client.close());
  const runs = new Map<string, number>();
  const work = defineJob({
    name: "replicated",
    input: "json",
    output: "json",
    handler: async (input, ctx) => {
      runs.set(ctx.taskId, (runs.get(ctx.taskId) ?? 0) + 1);
      await new Promise((r) => setTimeout(r, 10));
      return input;
    },
  });
  await client.registerJobType({ name: "replicated", leaseDurationMs: 1_000, defaultMaxAttempts: 5, defaultRetry: { backoffBaseMs: 0, backoffCapMs: 0 } });
  const workers: Worker[] = [];
  for (const [i, replica] of [a, a, b, b].entries()) {
    const worker = createWorker({ baseUrl: replica.url, jobs: [work], concurrency: 8, workerId: `w${i}`, reconnect: { initialDelayMs: 50, maxDelayMs: 200 } });
    workers.push(worker);
    await worker.start();
  }
  t.teardown(() => Promise.all(workers.map((w) => w.stop({ graceMs: 100 }))));
  await client.submitBatch(work, Array.from({ length: 400 }, (_, i) => ({ i })));
  // Kill replica A once work is flowing through both.
  while ([...runs.keys()].length < 60) await new Promise((r) => setTimeout(r, 10));
  a.child.kill("SIGKILL");

  const deadline = Date.now() + 30_000;
  let succeeded = 0n;
  while (Date.now() < deadline) {
    succeeded = (await client.listTasks({ jobTypes: ["replicated"], states: [TaskState.SUCCEEDED], pageSize: 1 })).totalCount;
    if (succeeded === 400n) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  t.equal(succeeded, 400n, "all 400 succeeded");
  const [row] = await database.db.query<{ tasks: string; succeeded_attempts: string; max_per_task: string }>(
    `SELECT count(DISTINCT t.id)::text AS tasks, count(*) FILTER (WHERE a.outcome = 'succeeded')::text AS succeeded_attempts,
       (SELECT max(n) FROM (SELECT count(*) FILTER (WHERE outcome = 'succeeded') AS n FROM task_attempt GROUP BY task_id) x)::text AS max_per_task
     FROM task t JOIN task_attempt a ON a.task_id = t.id WHERE t.job_type = 'replicated'`,
  );
  t.same(row, { tasks: "400", succeeded_attempts: "400", max_per_task: "1" }, "exactly one succeeded attempt per task");
  t.equal(runs.size, 400, "every task ran (some more than once: at-least-once execution)");
});
