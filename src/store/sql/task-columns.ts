/** The task columns every task query returns, and their mapping to TaskRecord. */
import type { NewTask, TaskRecord } from "../../core/task.js";
import type { TaskState } from "../../core/task-state.js";

/**
 * Selected as-is by task queries (alias `t`); ids come back as text so no precision is lost. The
 * dependencies are read (primary key of task_dependency) only for a task that has some.
 */
export const TASK_COLUMNS = `t.id::text AS id, t.namespace, t.job_type, t.state, t.input_type_url, t.input,
  t.output_type_url, t.output, t.priority, t.attempt, t.max_attempts, t.timeout_ms, t.run_at,
  t.created_at, t.updated_at, t.finished_at, t.worker_id, t.last_error, t.backoff_base_ms, t.backoff_cap_ms,
  t.lease_expires_at, t.progress, t.progress_message, t.checkpoint, t.idempotency_key, t.schedule_name, t.schedule_fire_at,
  t.concurrency_key, t.unmet_dependencies,
  CASE WHEN t.has_dependencies THEN ARRAY(SELECT d.parent_id::text FROM task_dependency d WHERE d.child_id = t.id ORDER BY d.parent_id) END AS depends_on`;

/** A row of TASK_COLUMNS. */
export interface TaskRow {
  id: string;
  namespace: string;
  job_type: string;
  state: TaskState;
  input_type_url: string;
  input: Buffer;
  output_type_url: string | null;
  output: Buffer | null;
  priority: number;
  attempt: number;
  max_attempts: number;
  timeout_ms: number | null;
  run_at: Date | string;
  created_at: Date | string;
  updated_at: Date | string;
  finished_at: Date | string | null;
  worker_id: string | null;
  last_error: string | null;
  backoff_base_ms: number;
  backoff_cap_ms: number;
  lease_expires_at: Date | string | null;
  progress: number;
  progress_message: string;
  checkpoint: Buffer | null;
  idempotency_key: string | null;
  schedule_name: string | null;
  schedule_fire_at: Date | string | null;
  unmet_dependencies: number;
  depends_on: string[] | null;
  concurrency_key: string | null;
}

/**
 * Timestamps arrive as strings on MikroORM's pool (it installs its own type parsers) and as Dates
 * on a plain pg pool; both become Dates here.
 */
export function toDate(value: Date | string): Date;
export function toDate(value: Date | string | null): Date | null;
export function toDate(value: Date | string | null): Date | null {
  return value === null ? null : value instanceof Date ? value : new Date(value);
}

/** Maps a TaskRow to the domain record. */
export function taskFromRow(row: TaskRow): TaskRecord {
  return {
    id: row.id,
    namespace: row.namespace,
    jobType: row.job_type,
    state: row.state,
    input: { typeUrl: row.input_type_url, value: row.input },
    output: row.output_type_url === null ? null : { typeUrl: row.output_type_url, value: row.output ?? Buffer.alloc(0) },
    priority: row.priority,
    attempt: row.attempt,
    maxAttempts: row.max_attempts,
    timeoutMs: row.timeout_ms,
    runAt: toDate(row.run_at),
    createdAt: toDate(row.created_at),
    updatedAt: toDate(row.updated_at),
    finishedAt: toDate(row.finished_at),
    workerId: row.worker_id,
    lastError: row.last_error,
    backoffBaseMs: row.backoff_base_ms,
    backoffCapMs: row.backoff_cap_ms,
    leaseExpiresAt: toDate(row.lease_expires_at),
    progress: row.progress,
    progressMessage: row.progress_message,
    checkpoint: row.checkpoint,
    idempotencyKey: row.idempotency_key,
    scheduleName: row.schedule_name,
    scheduleFireAt: toDate(row.schedule_fire_at),
    dependsOn: row.depends_on ?? [],
    unmetDependencies: row.unmet_dependencies,
    concurrencyKey: row.concurrency_key,
  };
}

/**
 * The columns every task insert takes from a NewTask, as the first ten unnest arrays ($1 to $10):
 * namespace, job_type, input_type_url, input, priority, max_attempts, timeout_ms, run_at,
 * backoff_base_ms, backoff_cap_ms.
 */
export function newTaskArrays(tasks: readonly NewTask[]): unknown[] {
  return [
    tasks.map((x) => x.namespace),
    tasks.map((x) => x.jobType),
    tasks.map((x) => x.input.typeUrl),
    tasks.map((x) => Buffer.from(x.input.value.buffer, x.input.value.byteOffset, x.input.value.byteLength)),
    tasks.map((x) => x.priority),
    tasks.map((x) => x.maxAttempts),
    tasks.map((x) => x.timeoutMs),
    tasks.map((x) => x.runAt),
    tasks.map((x) => x.backoffBaseMs),
    tasks.map((x) => x.backoffCapMs),
  ];
}

/** Orders rows of one insert by id, which the identity column assigned in input order. */
export function byId<T extends { id: string }>(a: T, b: T): number {
  return BigInt(a.id) < BigInt(b.id) ? -1 : 1;
}
