/** The scheduler's last step: moves each handled schedule on to its next fire time. */
import type { Db } from "../db.js";

// One statement for the whole batch; the rows are locked by schedule-claim-due in this transaction.
const SQL = `
UPDATE schedule s SET next_fire_at = r.next_fire_at,
  last_fire_at = coalesce(r.last_fire_at, s.last_fire_at),
  last_task_id = coalesce(r.last_task_id, s.last_task_id),
  last_error = r.last_error,
  updated_at = now()
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::bigint[], $6::text[])
  AS r(namespace, name, next_fire_at, last_fire_at, last_task_id, last_error)
WHERE s.namespace = r.namespace AND s.name = r.name`;

/** Where one schedule goes on from. */
export interface ScheduleAdvance {
  namespace: string;
  name: string;
  nextFireAt: Date | null;
  /** Null: unchanged. */
  lastFireAt: Date | null;
  lastTaskId: string | null;
  /** Null clears the last error. */
  lastError: string | null;
}

/** Advances the schedules. */
export async function scheduleAdvance(db: Db, advances: readonly ScheduleAdvance[]): Promise<void> {
  await db.query(SQL, [
    advances.map((a) => a.namespace),
    advances.map((a) => a.name),
    advances.map((a) => a.nextFireAt),
    advances.map((a) => a.lastFireAt),
    advances.map((a) => a.lastTaskId),
    advances.map((a) => a.lastError),
  ]);
}
