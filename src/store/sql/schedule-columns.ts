/** The schedule columns every schedule query returns, and their mapping to ScheduleRecord. */
import type { MissedFirePolicy, ScheduleRecord } from "../../core/schedule.js";
import { toDate } from "./task-columns.js";

/** Selected as-is by schedule queries (alias `s`). */
export const SCHEDULE_COLUMNS = `s.namespace, s.name, s.cron, s.time_zone, s.job_type, s.input_type_url, s.input, s.priority,
  s.max_attempts, s.timeout_ms, s.backoff_base_ms, s.backoff_cap_ms, s.missed_policy, s.paused, s.next_fire_at,
  s.last_fire_at, s.last_task_id::text AS last_task_id, s.last_error, s.created_at, s.updated_at, s.concurrency_key`;

/** A row of SCHEDULE_COLUMNS. */
export interface ScheduleRow {
  namespace: string;
  name: string;
  cron: string;
  time_zone: string;
  job_type: string;
  input_type_url: string;
  input: Buffer;
  priority: number;
  max_attempts: number;
  timeout_ms: number | null;
  backoff_base_ms: number;
  backoff_cap_ms: number;
  missed_policy: MissedFirePolicy;
  paused: boolean;
  next_fire_at: Date | string | null;
  last_fire_at: Date | string | null;
  last_task_id: string | null;
  last_error: string | null;
  created_at: Date | string;
  updated_at: Date | string;
  concurrency_key: string | null;
}

/** Maps a ScheduleRow to the domain record. */
export function scheduleFromRow(row: ScheduleRow): ScheduleRecord {
  return {
    namespace: row.namespace,
    name: row.name,
    cron: row.cron,
    timeZone: row.time_zone,
    jobType: row.job_type,
    input: { typeUrl: row.input_type_url, value: row.input },
    priority: row.priority,
    maxAttempts: row.max_attempts,
    timeoutMs: row.timeout_ms,
    backoffBaseMs: row.backoff_base_ms,
    backoffCapMs: row.backoff_cap_ms,
    concurrencyKey: row.concurrency_key,
    missedPolicy: row.missed_policy,
    paused: row.paused,
    nextFireAt: toDate(row.next_fire_at),
    lastFireAt: toDate(row.last_fire_at),
    lastTaskId: row.last_task_id,
    lastError: row.last_error,
    createdAt: toDate(row.created_at),
    updatedAt: toDate(row.updated_at),
  };
}
