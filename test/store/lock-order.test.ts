/**
 * The statements that write running tasks of one worker (reports, progress, heartbeats) lock their
 * rows in id order, whatever order the reports came in. A heartbeat extends the leases a session
 * holds (in assignment order) while reports of some of them are being written (in arrival order,
 * credits come back on receipt): in two different orders, the two statements could each hold a
 * row the other waits for, and PostgreSQL would abort one after deadlock_timeout (a heartbeat's
 * abort ended the worker's stream).
 *
 * How it is seen: a transaction holds the higher-id row B; the statement is given [B, A]. Locking
 * in id order, it takes A first, then waits for B, so A cannot be locked by anyone else meanwhile.
 */
import t from "tap";
import type { Assignment, NewTask } from "../../src/core/task.js";
import { taskAdopt } from "../../src/store/sql/task-adopt.js";
import { taskClaimAvailable } from "../../src/store/sql/task-claim-available.js";
import { taskCompleteBatch } from "../../src/store/sql/task-complete-batch.js";
import { taskFailBatch } from "../../src/store/sql/task-fail-batch.js";
import { taskInsertBatch } from "../../src/store/sql/task-insert-batch.js";
import { taskLeaseExtend } from "../../src/store/sql/task-lease-extend.js";
import { taskProgressBatch } from "../../src/store/sql/task-progress-batch.js";
import { taskReleaseBatch } from "../../src/store/sql/task-release-batch.js";
import { createTestDatabase } from "../helpers/database.js";

const { database } = await createTestDatabase(t);
const { db, pool } = database;
await db.query("INSERT INTO job_type (namespace, name) VALUES ('default', 'lock.order')");
// A table of some size, so the planner chooses what it does in production: a nested loop over the
// reports, each a primary-key lookup (on a handful of rows it scans the table instead).
await db.query(`INSERT INTO task (namespace, job_type, input_type_url, input, priority, max_attempts, state, finished_at)
  SELECT 'default', 'lock.filler', 'type.googleapis.com/google.protobuf.Value', '\\x'::bytea, 0, 1, 'succeeded', now() FROM generate_series(1, 5000)`);
await db.query("ANALYZE task");

const newTask = (i: number): NewTask => ({
  namespace: "default",
  jobType: "lock.order",
  input: { typeUrl: "type.googleapis.com/google.protobuf.Value", value: Buffer.from([8, i]) },
  priority: 0,
  maxAttempts: 3,
  timeoutMs: null,
  runAt: null,
  backoffBaseMs: 0,
  backoffCapMs: 0,
});

/** Two running tasks, lower id first. */
async function twoRunning(): Promise<[Assignment, Assignment]> {
  await taskInsertBatch(db, [newTask(1), newTask(2)]);
  const claimed = await taskClaimAvailable(db, { namespace: "default", jobTypes: ["lock.order"], limit: 2, workerId: "w" });
  claimed.sort((x, y) => Number(BigInt(x.taskId) - BigInt(y.taskId)));
  return [claimed[0]!, claimed[1]!];
}

/** Whether `statement`, given [b, a] while b is locked elsewhere, holds a's lock while it waits. */
async function locksInIdOrder(statement: (first: Assignment, second: Assignment) => Promise<unknown>): Promise<boolean> {
  const [a, b] = await twoRunning();
  const holder = await pool.connect();
  try {
    await holder.query("BEGIN");
    await holder.query("SELECT id FROM task WHERE id = $1 FOR UPDATE", [b.taskId]);
    const running = statement(b, a);
    const deadline = Date.now() + 5_000;
    for (;;) {
      const [row] = await db.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
      );
      if (row!.n > 0) break;
      if (Date.now() > deadline) throw new Error("the statement never waited for the held row");
      await new Promise((r) => setTimeout(r, 10));
    }
    const probe = await db.query("SELECT id FROM task WHERE id = $1 FOR UPDATE NOWAIT", [a.taskId]).then(
      () => "free",
      (error: { code?: string }) => (error.code === "55P03" ? "locked" : Promise.reject(error)),
    );
    await holder.query("ROLLBACK");
    await running;
    return probe === "locked";
  } finally {
    holder.release();
  }
}

const lease = (x: Assignment) => ({ namespace: "default", taskId: x.taskId, attempt: x.attempt, leaseToken: x.leaseToken });

t.test("completions", async (t) => {
  t.ok(await locksInIdOrder((x, y) => taskCompleteBatch(db, [x, y].map((r) => ({ ...lease(r), output: null })))), "given [B, A], it locks A first");
});

t.test("failures", async (t) => {
  t.ok(await locksInIdOrder((x, y) => taskFailBatch(db, [x, y].map((r) => ({ ...lease(r), error: "e", nonRetryable: false, outcome: "failed" as const, jitter: 0 })))), "given [B, A], it locks A first");
});

t.test("releases", async (t) => {
  t.ok(await locksInIdOrder((x, y) => taskReleaseBatch(db, [x, y].map((r) => ({ ...lease(r), reason: "r" })))), "given [B, A], it locks A first");
});

t.test("progress", async (t) => {
  t.ok(await locksInIdOrder((x, y) => taskProgressBatch(db, [x, y].map((r) => ({ ...lease(r), fraction: 0.5, message: "half" })))), "given [B, A], it locks A first");
});

t.test("heartbeats", async (t) => {
  t.ok(await locksInIdOrder((x, y) => taskLeaseExtend(db, { namespace: "default", workerId: "w", leases: [lease(x), lease(y)] })), "given [B, A], it locks A first");
});

t.test("adoptions", async (t) => {
  t.ok(await locksInIdOrder((x, y) => taskAdopt(db, { namespace: "default", workerId: "w", leases: [lease(x), lease(y)] })), "given [B, A], it locks A first");
});
