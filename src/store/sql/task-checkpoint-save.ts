/** Saves an attempt's checkpoint on its task, for the next attempt to resume from. */
import type { LeaseRef } from "../../core/task.js";
import type { Db } from "../db.js";

// Fenced like every report; one row by primary key.
const SQL = `
UPDATE task SET checkpoint = $5, updated_at = now()
WHERE id = $1 AND namespace = $2 AND state = 'running' AND attempt = $3 AND lease_token = $4
RETURNING id`;

/** True when saved; false when the lease is not current. */
export async function taskCheckpointSave(db: Db, lease: LeaseRef, checkpoint: Uint8Array): Promise<boolean> {
  const rows = await db.query(SQL, [lease.taskId, lease.namespace, lease.attempt, lease.leaseToken, Buffer.from(checkpoint)]);
  return rows.length > 0;
}
