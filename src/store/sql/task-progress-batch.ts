/** Writes coalesced progress of many attempts in one statement. */
import type { ProgressReport } from "../../core/task.js";
import type { Db } from "../db.js";
import { inLockOrder } from "../lock-order.js";

// Fenced like every report: progress of a stale attempt is dropped.
const SQL = `
UPDATE task t SET progress = r.fraction, progress_message = r.message, updated_at = now()
FROM unnest($1::bigint[], $2::text[], $3::int[], $4::uuid[], $5::float8[], $6::text[])
  AS r(id, namespace, attempt, lease_token, fraction, message)
WHERE t.id = r.id AND t.namespace = r.namespace AND t.attempt = r.attempt
  AND t.lease_token = r.lease_token`;

/** Records the latest progress of each attempt. */
export async function taskProgressBatch(db: Db, given: readonly ProgressReport[]): Promise<void> {
  // Rows are locked in this order (src/store/lock-order.ts).
  const reports = inLockOrder(given);
  await db.query(SQL, [
    reports.map((r) => r.taskId),
    reports.map((r) => r.namespace),
    reports.map((r) => r.attempt),
    reports.map((r) => r.leaseToken),
    reports.map((r) => r.fraction),
    reports.map((r) => r.message),
  ]);
}
