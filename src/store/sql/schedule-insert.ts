/** CreateSchedule: one INSERT; the primary key (namespace, name) settles concurrent creations. */
import type { ScheduleRecord } from "../../core/schedule.js";
import type { Db } from "../db.js";
import { SCHEDULE_COLUMNS, scheduleFromRow, type ScheduleRow } from "./schedule-columns.js";

const SQL = `
INSERT INTO schedule AS s (namespace, name, cron, time_zone, job_type, input_type_url, input, priority, max_attempts,
  timeout_ms, backoff_base_ms, backoff_cap_ms, missed_policy, paused, next_fire_at, concurrency_key)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
ON CONFLICT (namespace, name) DO NOTHING
RETURNING ${SCHEDULE_COLUMNS}`;

/** What CreateSchedule writes. */
export type NewSchedule = Omit<ScheduleRecord, "lastFireAt" | "lastTaskId" | "lastError" | "createdAt" | "updatedAt">;

/** Inserts the schedule; undefined when the namespace already has one of that name. */
export async function scheduleInsert(db: Db, s: NewSchedule): Promise<ScheduleRecord | undefined> {
  const [row] = await db.query<ScheduleRow>(SQL, [
    s.namespace,
    s.name,
    s.cron,
    s.timeZone,
    s.jobType,
    s.input.typeUrl,
    Buffer.from(s.input.value.buffer, s.input.value.byteOffset, s.input.value.byteLength),
    s.priority,
    s.maxAttempts,
    s.timeoutMs,
    s.backoffBaseMs,
    s.backoffCapMs,
    s.missedPolicy,
    s.paused,
    s.nextFireAt,
    s.concurrencyKey,
  ]);
  return row === undefined ? undefined : scheduleFromRow(row);
}
