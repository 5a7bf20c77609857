/** Heartbeats: extends the leases a worker names, by their job types' lease length. */
import type { LeaseRef } from "../../core/task.js";
import type { Db } from "../db.js";
import { inLockOrder } from "../lock-order.js";
import { toDate } from "./task-columns.js";

// Fenced by state, attempt and token, so an expired or stolen lease is not revived; found by
// primary key. The worker's last_seen_at moves in the same statement.
const SQL = `
WITH lease AS (
  SELECT * FROM unnest($1::bigint[], $2::int[], $3::uuid[]) AS l(id, attempt, lease_token)
), extended AS (
  UPDATE task t SET lease_expires_at = now() + (SELECT jt.lease_ms FROM job_type jt WHERE jt.namespace = t.namespace AND jt.name = t.job_type) * interval '1 millisecond'
  FROM lease l
  WHERE t.id = l.id AND t.namespace = $4 AND t.attempt = l.attempt AND t.lease_token = l.lease_token
  RETURNING t.id, t.attempt, l.lease_token, t.lease_expires_at
), seen AS (
  UPDATE worker SET last_seen_at = now() WHERE namespace = $4 AND id = $5
)
SELECT id::text AS id, attempt, lease_token::text AS lease_token, lease_expires_at FROM extended`;

/** Extends the leases still held; returns those, with their new deadlines. */
export async function taskLeaseExtend(
  db: Db,
  params: { namespace: string; workerId: string; leases: readonly LeaseRef[] },
): Promise<{ taskId: string; attempt: number; leaseToken: string; leaseExpiresAt: Date }[]> {
  // Rows are locked in this order, the reports' order too (src/store/lock-order.ts).
  const leases = inLockOrder(params.leases);
  const rows = await db.query<{ id: string; attempt: number; lease_token: string; lease_expires_at: Date | string }>(SQL, [
    leases.map((l) => l.taskId),
    leases.map((l) => l.attempt),
    leases.map((l) => l.leaseToken),
    params.namespace,
    params.workerId,
  ]);
  return rows.map((r) => ({ taskId: r.id, attempt: r.attempt, leaseToken: r.lease_token, leaseExpiresAt: toDate(r.lease_expires_at) }));
}
