/** Retry: a DEAD or CANCELLED task runs again, keeping its history and attempt numbering. */
import { TASK_TRANSITIONS } from "../../core/task-state.js";
import type { TaskRecord } from "../../core/task.js";
import type { Db } from "../db.js";
import { TASK_COLUMNS, taskFromRow, type TaskRow } from "./task-columns.js";

// Guarded by the transition table's sources. The row trigger task_notify_pending wakes dispatchers.
// With unmet dependencies ($5 > 0, `retry_waiting`) the task waits for them instead; the caller
// holds their locks (FOR SHARE), so none of them can succeed unseen before this commits. A task
// that finished before its job type got limits is marked `limited` now (see migration 0040), or
// no claim would ever take it.
// An unfinished task must hold its idempotency key, so the task takes it back (key_released =
// false; a no-op for one that still holds it or has none). If another task holds the key now,
// task_idempotency_idx refuses the row: 23505, which isKeyConflict recognises. The caller frees
// expired holders first (task-key-release.ts) in the same transaction; a concurrent Submit that
// inserted the key and has not committed makes this wait for it, so the index settles the race.
const SQL = `
UPDATE task t
SET state = CASE WHEN $5::int > 0 THEN 'waiting' ELSE 'pending' END, unmet_dependencies = $5::int, run_at = now(), finished_at = NULL,
  max_attempts = t.attempt + $3, output_type_url = NULL, output = NULL, progress = 0, progress_message = '', updated_at = now(),
  key_released = false,
  limited = t.limited OR EXISTS (
    SELECT 1 FROM job_type j WHERE j.namespace = t.namespace AND j.name = t.job_type
      AND (j.rate_max_starts IS NOT NULL OR j.max_running IS NOT NULL OR j.max_running_per_key IS NOT NULL)
  )
WHERE t.id = $1 AND t.namespace = $2 AND t.state = ANY($4::text[])
RETURNING ${TASK_COLUMNS}`;

/**
 * Re-queues the task with `additionalAttempts` more attempts: PENDING, or WAITING for
 * `unmetDependencies` (> 0) dependencies. Undefined when absent or not retryable.
 */
export async function taskRetry(
  db: Db,
  params: { namespace: string; id: string; additionalAttempts: number; unmetDependencies?: number },
): Promise<TaskRecord | undefined> {
  const unmet = params.unmetDependencies ?? 0;
  const from = unmet > 0 ? TASK_TRANSITIONS.retry_waiting.from : TASK_TRANSITIONS.retry.from;
  const [row] = await db.query<TaskRow>(SQL, [params.id, params.namespace, params.additionalAttempts, from, unmet]);
  return row === undefined ? undefined : taskFromRow(row);
}

/** True when the error is task_idempotency_idx refusing a second holder of a key (unique_violation). */
export function isKeyConflict(error: unknown): boolean {
  const e = error as { code?: unknown; constraint?: unknown } | null;
  return e?.code === "23505" && e.constraint === "task_idempotency_idx";
}
