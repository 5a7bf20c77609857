/** The scheduler's tasks: ordinary tasks that also record their schedule and fire time. */
import type { NewTask } from "../../core/task.js";
import type { Db } from "../db.js";

// ON CONFLICT on task_schedule_fire_idx (namespace, schedule_name, schedule_fire_at): a fire time
// that already has its task gets no second one, whichever replica tries, so exactly one task per
// fire time holds even if two schedulers computed the same fire. The usual triggers run: a
// 'created' event per task and a NOTIFY that wakes dispatchers. `limited` comes from the job
// type's row (see migration 0040).
const SQL = `
INSERT INTO task AS t (namespace, job_type, input_type_url, input, priority, max_attempts, timeout_ms,
  backoff_base_ms, backoff_cap_ms, schedule_name, schedule_fire_at, concurrency_key, limited)
SELECT r.namespace, r.job_type, r.input_type_url, r.input, r.priority, r.max_attempts, r.timeout_ms,
  r.backoff_base_ms, r.backoff_cap_ms, r.schedule_name, r.schedule_fire_at, r.concurrency_key,
  coalesce(j.rate_max_starts IS NOT NULL OR j.max_running IS NOT NULL OR j.max_running_per_key IS NOT NULL, false)
FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::int[], $6::int[], $7::int[], $8::int[], $9::int[],
  $10::text[], $11::timestamptz[], $12::text[])
  AS r(namespace, job_type, input_type_url, input, priority, max_attempts, timeout_ms, backoff_base_ms, backoff_cap_ms,
    schedule_name, schedule_fire_at, concurrency_key)
LEFT JOIN job_type j ON j.namespace = r.namespace AND j.name = r.job_type
ON CONFLICT (namespace, schedule_name, schedule_fire_at) WHERE schedule_name IS NOT NULL DO NOTHING
RETURNING t.id::text AS id, t.namespace, t.schedule_name, t.schedule_fire_at`;

/** A task for one fire time of a schedule. */
export interface ScheduledTask extends Omit<NewTask, "runAt" | "idempotencyKey" | "limited"> {
  scheduleName: string;
  fireAt: Date;
}

/** A created task and the fire it stands for. */
export interface ScheduledTaskRow {
  id: string;
  namespace: string;
  schedule_name: string;
  schedule_fire_at: Date | string;
}

/** Inserts the tasks whose fire time has none yet; returns those created. */
export function taskInsertScheduled(db: Db, tasks: readonly ScheduledTask[]): Promise<ScheduledTaskRow[]> {
  return db.query<ScheduledTaskRow>(SQL, [
    tasks.map((x) => x.namespace),
    tasks.map((x) => x.jobType),
    tasks.map((x) => x.input.typeUrl),
    tasks.map((x) => Buffer.from(x.input.value.buffer, x.input.value.byteOffset, x.input.value.byteLength)),
    tasks.map((x) => x.priority),
    tasks.map((x) => x.maxAttempts),
    tasks.map((x) => x.timeoutMs),
    tasks.map((x) => x.backoffBaseMs),
    tasks.map((x) => x.backoffCapMs),
    tasks.map((x) => x.scheduleName),
    tasks.map((x) => x.fireAt),
    tasks.map((x) => x.concurrencyKey ?? null),
  ]);
}
