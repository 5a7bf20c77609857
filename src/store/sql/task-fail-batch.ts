/** Records many failed (or lost) attempts in one statement: retry with backoff, or dead-letter. */
import type { FailureReport } from "../../core/task.js";
import type { TaskState } from "../../core/task-state.js";
import type { Db } from "../db.js";
import { inLockOrder } from "../lock-order.js";
import { reportKey } from "./task-complete-batch.js";

// Fenced like task-complete-batch. A retryable failure with attempts left goes back to PENDING at
// now() + backoff (the row trigger task_notify_pending wakes dispatchers); otherwise the task is
// DEAD. The delay is taskwire_backoff_ms (migration 0002, the SQL twin of src/core/backoff.ts) over
// the task's own backoff settings, with the caller's jitter.
const SQL = `
WITH report AS (
  SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[], $4::uuid[], $5::text[], $6::bool[], $7::float8[], $8::text[])
    AS r(id, namespace, attempt, lease_token, error, non_retryable, jitter, outcome)
), failed AS (
  UPDATE task t
  SET state = CASE WHEN r.non_retryable OR t.attempt >= t.max_attempts THEN 'dead' ELSE 'pending' END,
    run_at = CASE WHEN r.non_retryable OR t.attempt >= t.max_attempts THEN t.run_at
      ELSE now() + taskwire_backoff_ms(t.backoff_base_ms, t.backoff_cap_ms, t.attempt, r.jitter) * interval '1 millisecond' END,
    finished_at = CASE WHEN r.non_retryable OR t.attempt >= t.max_attempts THEN now() END,
    lease_token = NULL, lease_expires_at = NULL, timeout_at = NULL, last_error = r.error, updated_at = now()
  FROM report r
  WHERE t.id = r.id AND t.namespace = r.namespace AND t.attempt = r.attempt
    AND t.lease_token = r.lease_token
  RETURNING t.id, t.attempt, t.state, r.lease_token
), history AS (
  UPDATE task_attempt a SET outcome = r.outcome, error = r.error, ended_at = now()
  FROM failed f JOIN report r ON r.id = f.id AND r.attempt = f.attempt AND r.lease_token = f.lease_token
  WHERE a.task_id = f.id AND a.number = f.attempt
)
SELECT id::text AS id, attempt, lease_token::text AS lease_token, state FROM failed`;

/** Applies the reports whose lease is current; returns each accepted report's new task state by reportKey. */
export async function taskFailBatch(
  db: Db,
  given: readonly (FailureReport & { jitter: number })[],
): Promise<Map<string, TaskState>> {
  // Rows are locked in this order (src/store/lock-order.ts).
  const reports = inLockOrder(given);
  const rows = await db.query<{ id: string; attempt: number; lease_token: string; state: TaskState }>(SQL, [
    reports.map((r) => r.taskId),
    reports.map((r) => r.namespace),
    reports.map((r) => r.attempt),
    reports.map((r) => r.leaseToken),
    reports.map((r) => r.error),
    reports.map((r) => r.nonRetryable),
    reports.map((r) => r.jitter),
    reports.map((r) => r.outcome),
  ]);
  return new Map(rows.map((row) => [reportKey({ taskId: row.id, attempt: row.attempt, leaseToken: row.lease_token }), row.state]));
}
