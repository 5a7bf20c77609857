/** Reads several tasks of a namespace by id (primary key), in id order. */
import type { TaskRecord } from "../../core/task.js";
import type { Db } from "../db.js";
import { TASK_COLUMNS, taskFromRow, type TaskRow } from "./task-columns.js";

const SQL = `SELECT ${TASK_COLUMNS} FROM task t WHERE t.id = ANY($1::bigint[]) AND t.namespace = $2 ORDER BY t.id`;

/** The tasks that exist among `ids`, in ascending id order. */
export async function taskGetMany(db: Db, namespace: string, ids: readonly string[]): Promise<TaskRecord[]> {
  const rows = await db.query<TaskRow>(SQL, [ids, namespace]);
  return rows.map(taskFromRow);
}
