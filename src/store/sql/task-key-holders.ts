/** Keyed Submit, step 3: the tasks holding keys (the ones a duplicate Submit returns). */
import type { TaskRecord } from "../../core/task.js";
import type { Db } from "../db.js";
import { TASK_COLUMNS, taskFromRow, type TaskRow } from "./task-columns.js";
import type { TaskKey } from "./task-key-release.js";

// Served by task_idempotency_idx; at most one holder per key by that index.
const SQL = `
SELECT ${TASK_COLUMNS}
FROM unnest($1::text[], $2::text[], $3::text[]) AS r(namespace, job_type, key)
JOIN task t ON t.namespace = r.namespace AND t.job_type = r.job_type AND t.idempotency_key = r.key AND NOT t.key_released`;

/** The holders of these keys that exist now (a key may have none if its holder was released meanwhile). */
export async function taskKeyHolders(db: Db, keys: readonly TaskKey[]): Promise<TaskRecord[]> {
  const rows = await db.query<TaskRow>(SQL, [keys.map((k) => k.namespace), keys.map((k) => k.jobType), keys.map((k) => k.key)]);
  return rows.map(taskFromRow);
}
