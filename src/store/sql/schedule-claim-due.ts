/** The scheduler's first step: locks the schedules whose next fire time has come. */
import type { ScheduleRecord } from "../../core/schedule.js";
import type { Db } from "../db.js";
import { SCHEDULE_COLUMNS, scheduleFromRow, type ScheduleRow } from "./schedule-columns.js";

// Served by schedule_due_idx (next_fire_at) WHERE NOT paused AND next_fire_at IS NOT NULL. FOR
// UPDATE SKIP LOCKED: each replica's scheduler takes disjoint schedules and never waits for
// another; a schedule another replica has just advanced is re-checked against its new
// next_fire_at and left out. The locks last for the scheduler's short transaction (insert the
// tasks, advance the schedules). now() is the transaction's time, the clock every replica shares.
// The job type's current input type comes along, to catch a schedule whose input no longer fits.
const SQL = `
SELECT ${SCHEDULE_COLUMNS}, now() AS now, jt.input_type AS job_input_type
FROM schedule s
LEFT JOIN job_type jt ON jt.namespace = s.namespace AND jt.name = s.job_type
WHERE NOT s.paused AND s.next_fire_at IS NOT NULL AND s.next_fire_at <= now()
ORDER BY s.next_fire_at
LIMIT $1
FOR UPDATE OF s SKIP LOCKED`;

/** A due schedule, with the database's time and its job type's input type (null: the job type is gone). */
export interface DueSchedule {
  schedule: ScheduleRecord & { nextFireAt: Date };
  now: Date;
  jobInputType: string | null;
}

/** Locks up to `limit` due schedules for the calling transaction. */
export async function scheduleClaimDue(db: Db, limit: number): Promise<DueSchedule[]> {
  const rows = await db.query<ScheduleRow & { now: Date | string; job_input_type: string | null }>(SQL, [limit]);
  return rows.map((row) => ({
    schedule: scheduleFromRow(row) as ScheduleRecord & { nextFireAt: Date },
    now: new Date(row.now),
    jobInputType: row.job_input_type,
  }));
}
