/** One page of a namespace's schedules by name (keyset pages over the primary key). */
import type { ScheduleRecord } from "../../core/schedule.js";
import type { Db } from "../db.js";
import { SCHEDULE_COLUMNS, scheduleFromRow, type ScheduleRow } from "./schedule-columns.js";

const SQL = `
SELECT ${SCHEDULE_COLUMNS} FROM schedule s
WHERE s.namespace = $1 AND ($2::text IS NULL OR s.name > $2)
ORDER BY s.name LIMIT $3`;

/** Up to `limit` schedules named after `afterName`. */
export async function scheduleList(db: Db, namespace: string, afterName: string | null, limit: number): Promise<ScheduleRecord[]> {
  const rows = await db.query<ScheduleRow>(SQL, [namespace, afterName, limit]);
  return rows.map(scheduleFromRow);
}
