/** Reads one schedule by name. */
import type { ScheduleRecord } from "../../core/schedule.js";
import type { Db } from "../db.js";
import { SCHEDULE_COLUMNS, scheduleFromRow, type ScheduleRow } from "./schedule-columns.js";

const SQL = `SELECT ${SCHEDULE_COLUMNS} FROM schedule s WHERE s.namespace = $1 AND s.name = $2`;

/** The schedule, or undefined. */
export async function scheduleGet(db: Db, namespace: string, name: string): Promise<ScheduleRecord | undefined> {
  const [row] = await db.query<ScheduleRow>(SQL, [namespace, name]);
  return row === undefined ? undefined : scheduleFromRow(row);
}
