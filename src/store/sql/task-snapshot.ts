/** A watcher's starting point: the selected tasks and the event sequence they are current at. */
import type { EventFilter, TaskRecord } from "../../core/task.js";
import type { Db } from "../db.js";
import { TASK_COLUMNS, taskFromRow, type TaskRow } from "./task-columns.js";

// Run in one REPEATABLE READ transaction with namespaceEventSeq, so the tasks are exactly as of
// that sequence number. Named tasks come in any state; otherwise only unfinished ones (served by
// the claim index for pending rows).
const SQL = `
SELECT ${TASK_COLUMNS} FROM task t
WHERE t.namespace = $1
  AND (cardinality($2::bigint[]) = 0 OR t.id = ANY($2::bigint[]))
  AND (cardinality($2::bigint[]) > 0 OR t.state IN ('waiting', 'pending', 'running'))
  AND (cardinality($3::text[]) = 0 OR t.job_type = ANY($3::text[]))
  AND (cardinality($4::text[]) = 0 OR t.state = ANY($4::text[]))
ORDER BY t.id
LIMIT $5`;

/** The selected tasks, oldest first, at most `limit`. */
export async function taskSnapshot(db: Db, namespace: string, filter: EventFilter, limit: number): Promise<TaskRecord[]> {
  const rows = await db.query<TaskRow>(SQL, [namespace, filter.taskIds, filter.jobTypes, filter.states, limit]);
  return rows.map(taskFromRow);
}
