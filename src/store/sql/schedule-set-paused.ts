/** PauseSchedule / ResumeSchedule: one guarded UPDATE. */
import type { ScheduleRecord } from "../../core/schedule.js";
import type { Db } from "../db.js";
import { SCHEDULE_COLUMNS, scheduleFromRow, type ScheduleRow } from "./schedule-columns.js";

// Resuming a paused schedule moves its next fire time to $4 (the first after the resume), so what
// fell due while it was paused is not fired; pausing, or resuming one that runs, keeps it.
const SQL = `
UPDATE schedule s SET paused = $3,
  next_fire_at = CASE WHEN s.paused AND NOT $3 THEN $4::timestamptz ELSE s.next_fire_at END,
  updated_at = CASE WHEN s.paused <> $3 THEN now() ELSE s.updated_at END
WHERE s.namespace = $1 AND s.name = $2
RETURNING ${SCHEDULE_COLUMNS}`;

/** Sets `paused`; `nextFireAt` applies when a paused schedule resumes. Undefined when there is no such schedule. */
export async function scheduleSetPaused(db: Db, params: { namespace: string; name: string; paused: boolean; nextFireAt: Date | null }): Promise<ScheduleRecord | undefined> {
  const [row] = await db.query<ScheduleRow>(SQL, [params.namespace, params.name, params.paused, params.nextFireAt]);
  return row === undefined ? undefined : scheduleFromRow(row);
}
