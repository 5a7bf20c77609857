/** After a reconnect: a worker's new stream takes over the leases it still holds. */
import type { Assignment, LeaseRef } from "../../core/task.js";
import type { Db } from "../db.js";
import { inLockOrder } from "../lock-order.js";
import { assignmentFromRow, type ClaimRow } from "./task-claim-available.js";

// Fenced like every report: only the current lease (state, attempt, token) is adopted, and the
// lease is extended at once so the new stream's heartbeats take it from here.
const SQL = `
WITH lease AS (
  SELECT * FROM unnest($1::bigint[], $2::int[], $3::uuid[]) AS l(id, attempt, lease_token)
)
UPDATE task t SET lease_expires_at = now() + (SELECT jt.lease_ms FROM job_type jt WHERE jt.namespace = t.namespace AND jt.name = t.job_type) * interval '1 millisecond', worker_id = $5
FROM lease l
WHERE t.id = l.id AND t.namespace = $4 AND t.attempt = l.attempt AND t.lease_token = l.lease_token
RETURNING t.id::text AS id, t.job_type, t.input_type_url, t.input, t.attempt, t.max_attempts, t.lease_token::text AS lease_token,
  t.timeout_ms, t.created_at, t.lease_expires_at, t.checkpoint`;

/** Adopts the leases that are still current; returns them as assignments. */
export async function taskAdopt(db: Db, params: { namespace: string; workerId: string; leases: readonly LeaseRef[] }): Promise<Assignment[]> {
  if (params.leases.length === 0) return [];
  // Rows are locked in this order, as by heartbeats of the stream it replaces (src/store/lock-order.ts).
  const leases = inLockOrder(params.leases);
  const rows = await db.query<ClaimRow>(SQL, [
    leases.map((l) => l.taskId),
    leases.map((l) => l.attempt),
    leases.map((l) => l.leaseToken),
    params.namespace,
    params.workerId,
  ]);
  return rows.map((row) => assignmentFromRow(params.namespace, row));
}
