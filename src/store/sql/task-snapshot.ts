/** A watcher's starting point: the selected tasks and the event sequence they are current at. */
import type { EventFilter, TaskRecord } from "../../core/task.js";
import type { Db } from "../db.js";
import { TASK_COLUMNS, taskFromRow, type TaskRow } from "./task-columns.js";

// One statement, so one snapshot: the tasks are exactly as of the namespace's event sequence read
// with them (no transaction, one round trip: hundreds of watchers may subscribe at once). Named
// tasks come in any state; otherwise only unfinished ones (served by the claim index for pending rows).
const SQL = `
WITH hw AS (SELECT coalesce((SELECT event_seq FROM namespace WHERE name = $1), 0) AS event_seq)
SELECT hw.event_seq::text AS snapshot_seq, ${TASK_COLUMNS}
FROM hw LEFT JOIN LATERAL (
  SELECT * FROM task t
  WHERE t.namespace = $1
    AND (cardinality($2::bigint[]) = 0 OR t.id = ANY($2::bigint[]))
    AND (cardinality($2::bigint[]) > 0 OR t.state IN ('waiting', 'pending', 'running'))
    AND (cardinality($3::text[]) = 0 OR t.job_type = ANY($3::text[]))
    AND (cardinality($4::text[]) = 0 OR t.state = ANY($4::text[]))
  ORDER BY t.id
  LIMIT $5
) t ON true
ORDER BY t.id`;

/** The selected tasks, oldest first, at most `limit`, and the event sequence they are current at. */
export async function taskSnapshot(db: Db, namespace: string, filter: EventFilter, limit: number): Promise<{ seq: bigint; tasks: TaskRecord[] }> {
  const rows = await db.query<TaskRow & { snapshot_seq: string }>(SQL, [namespace, filter.taskIds, filter.jobTypes, filter.states, limit]);
  return { seq: BigInt(rows[0]?.snapshot_seq ?? "0"), tasks: rows.filter((r) => r.id !== null).map(taskFromRow) };
}
