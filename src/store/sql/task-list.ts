/** Lists tasks newest first with keyset pages, and counts all matches exactly. */
import type { TaskRecord } from "../../core/task.js";
import type { TaskState } from "../../core/task-state.js";
import type { Db } from "../db.js";
import { TASK_COLUMNS, taskFromRow, type TaskRow } from "./task-columns.js";

/** ListTasks filters; an empty array or null means "any". */
export interface TaskFilter {
  namespace: string;
  jobTypes: readonly string[];
  states: readonly TaskState[];
  workerId: string | null;
  createdAfter: Date | null;
  createdBefore: Date | null;
}

// Pages walk the primary key downwards (newest first) from the last id of the previous page, so a
// page costs the same however deep it is. Filters are parameters; NULL disables one.
const WHERE = `
t.namespace = $1
AND (cardinality($2::text[]) = 0 OR t.job_type = ANY($2::text[]))
AND (cardinality($3::text[]) = 0 OR t.state = ANY($3::text[]))
AND ($4::text IS NULL OR t.worker_id = $4)
AND ($5::timestamptz IS NULL OR t.created_at >= $5)
AND ($6::timestamptz IS NULL OR t.created_at < $6)`;

const PAGE_SQL = `
SELECT ${TASK_COLUMNS} FROM task t
WHERE ${WHERE} AND ($7::bigint IS NULL OR t.id < $7::bigint)
ORDER BY t.id DESC
LIMIT $8`;

const COUNT_SQL = `SELECT count(*)::bigint::text AS total FROM task t WHERE ${WHERE}`;

function filterParams(f: TaskFilter): unknown[] {
  return [f.namespace, f.jobTypes, f.states, f.workerId, f.createdAfter, f.createdBefore];
}

/** One page of tasks after `afterId` (exclusive), newest first; one more than `limit` tells if more follow. */
export async function taskListPage(
  db: Db,
  filter: TaskFilter,
  page: { afterId: string | null; limit: number },
): Promise<TaskRecord[]> {
  const rows = await db.query<TaskRow>(PAGE_SQL, [...filterParams(filter), page.afterId, page.limit]);
  return rows.map(taskFromRow);
}

/** The exact number of tasks matching the filter. */
export async function taskCount(db: Db, filter: TaskFilter): Promise<number> {
  const [row] = await db.query<{ total: string }>(COUNT_SQL, filterParams(filter));
  return Number(row?.total ?? 0);
}
