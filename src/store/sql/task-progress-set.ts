/** Unary ReportProgress: writes one attempt's progress at once, saying whether its lease is current. */
import type { ProgressReport } from "../../core/task.js";
import type { Db } from "../db.js";

// Fenced like every report; one row by primary key, locked only for the statement. The stream's
// progress goes through task-progress-batch.ts (coalesced) instead.
const SQL = `
UPDATE task SET progress = $5, progress_message = $6, updated_at = now()
WHERE id = $1 AND namespace = $2 AND state = 'running' AND attempt = $3 AND lease_token = $4
RETURNING id`;

/** True when written; false when the lease is not current (or the task is not in the namespace). */
export async function taskProgressSet(db: Db, report: ProgressReport): Promise<boolean> {
  const rows = await db.query(SQL, [report.taskId, report.namespace, report.attempt, report.leaseToken, report.fraction, report.message]);
  return rows.length > 0;
}
