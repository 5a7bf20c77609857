/**
 * A progress batch already being written must land before a later write of the same task's
 * progress or outcome: committing after a unary ReportProgress, its older value replaced the newer
 * one (flushBefore only looked at reports not yet flushed).
 */
import t from "tap";
import type { Db } from "../../src/store/db.js";
import { ProgressCoalescer } from "../../src/dispatch/progress-coalescer.js";
import { taskProgressSet } from "../../src/store/sql/task-progress-set.js";
import { jsonAny } from "../helpers/payload.js";
import { testLogger } from "../helpers/logger.js";
import { startTestServer } from "../helpers/server.js";

const s = await startTestServer(t);
const db = s.server.engine.database.db;

/** The real database, with the progress batch statement held until the test opens the gate. */
function gatedDb(): { db: Db; open: () => void; reached: Promise<void> } {
  let open!: () => void;
  let reached!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const arrived = new Promise<void>((resolve) => (reached = resolve));
  return {
    open,
    reached: arrived,
    db: {
      async query<Row>(text: string, values?: readonly unknown[]): Promise<Row[]> {
        if (/unnest/.test(text) && /progress/.test(text)) {
          reached();
          await gate;
        }
        return db.query<Row>(text, values);
      },
    },
  };
}

t.test("a unary progress write waits for a batch of the same task already in flight", async (t) => {
  await s.jobTypes.registerJobType({ name: "progress.order" });
  await s.tasks.submit({ task: { jobType: "progress.order", input: jsonAny(1) } });
  const [a] = (await s.workers.claimTasks({ workerId: "w-progress", jobTypes: ["progress.order"], maxTasks: 1 })).assignments;
  const lease = { namespace: "default", taskId: a!.taskId, attempt: a!.attempt, leaseToken: a!.leaseToken };
  const gated = gatedDb();
  const coalescer = new ProgressCoalescer(gated.db, testLogger(), 60_000);
  t.teardown(() => coalescer.stop());

  coalescer.report({ ...lease, fraction: 0.3, message: "older, from the stream" });
  const flushed = coalescer.flush();
  await gated.reached;
  let waited = false;
  const before = coalescer.flushBefore("default", [lease.taskId]).then(() => (waited = true));
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.equal(waited, false, "flushBefore waits for the batch in flight");
  await coalescer.flushBefore("default", ["999999"]);
  t.pass("another task's flushBefore does not wait for it");

  gated.open();
  await Promise.all([flushed, before]);
  t.ok(await taskProgressSet(db, { ...lease, fraction: 0.6, message: "newer, unary" }));
  const [row] = await db.query<{ progress: number; progress_message: string }>("SELECT progress, progress_message FROM task WHERE id = $1", [lease.taskId]);
  t.same([row!.progress, row!.progress_message], [0.6, "newer, unary"], "the newer value is the one kept");
});
