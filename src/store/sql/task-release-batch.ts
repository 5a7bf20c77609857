/** A draining worker hands tasks back: PENDING again at once, and the attempt does not count. */
import type { ReleaseReport } from "../../core/task.js";
import type { Db } from "../db.js";
import { inLockOrder } from "../lock-order.js";
import { reportKey } from "./task-complete-batch.js";

// The attempt keeps its number and history row (outcome 'released'); max_attempts grows by one so
// the task still gets every attempt it was promised. Fenced like every report.
const SQL = `
WITH report AS (
  SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[], $4::uuid[], $5::text[])
    AS r(id, namespace, attempt, lease_token, reason)
), released AS (
  UPDATE task t
  SET state = 'pending', run_at = now(), max_attempts = t.max_attempts + 1, lease_token = NULL,
    lease_expires_at = NULL, timeout_at = NULL, updated_at = now()
  FROM report r
  WHERE t.id = r.id AND t.namespace = r.namespace AND t.attempt = r.attempt
    AND t.lease_token = r.lease_token
  RETURNING t.id, t.attempt, r.lease_token, r.reason
), history AS (
  UPDATE task_attempt a SET outcome = 'released', error = released.reason, ended_at = now()
  FROM released
  WHERE a.task_id = released.id AND a.number = released.attempt
)
SELECT id::text AS id, attempt, lease_token::text AS lease_token FROM released`;

/** Releases the reports whose lease is current; returns the reportKey of each accepted one. */
export async function taskReleaseBatch(db: Db, given: readonly ReleaseReport[]): Promise<Set<string>> {
  // Rows are locked in this order (src/store/lock-order.ts).
  const reports = inLockOrder(given);
  const rows = await db.query<{ id: string; attempt: number; lease_token: string }>(SQL, [
    reports.map((r) => r.taskId),
    reports.map((r) => r.namespace),
    reports.map((r) => r.attempt),
    reports.map((r) => r.leaseToken),
    reports.map((r) => r.reason),
  ]);
  return new Set(rows.map((row) => reportKey({ taskId: row.id, attempt: row.attempt, leaseToken: row.lease_token })));
}
