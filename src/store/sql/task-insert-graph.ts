/** Submit with dependencies: inserts the tasks of one submit, each WAITING or PENDING as planned. */
import type { GraphStart } from "../../core/dependencies.js";
import type { NewTask, TaskRecord } from "../../core/task.js";
import type { Db } from "../db.js";
import { byId, newTaskArrays, TASK_COLUMNS, taskFromRow, type TaskRow } from "./task-columns.js";

// As task-insert-batch.ts without direct hand-off (a task with dependencies is never handed off),
// plus where each task starts (src/core/dependencies.ts planGraph). Only PENDING rows are announced
// by task_notify_inserted; a WAITING row is claimable only once the settle trigger moves it to
// PENDING (task_claim_idx covers PENDING rows only). Ids are assigned in input order (ORDER BY n),
// so a task's dependencies within the submit get smaller ids than it does. Concurrency keys and
// `limited` as in task-insert-batch.ts (migration 0041 marks a task that becomes PENDING if its
// job type got limits while it waited).
// Idempotency keys as in task-insert-keyed.ts: ON CONFLICT on task_idempotency_idx skips a row
// whose key another task holds (after waiting for an uncommitted holder), so fewer rows come back
// and the caller, whose plan assumed the key free, starts over. Rows without a key never conflict.
const SQL = `
INSERT INTO task AS t (namespace, job_type, input_type_url, input, priority, max_attempts, timeout_ms, run_at,
  backoff_base_ms, backoff_cap_ms, state, unmet_dependencies, has_dependencies, has_dependents, concurrency_key, limited, idempotency_key)
SELECT r.namespace, r.job_type, r.input_type_url, r.input, r.priority, r.max_attempts, r.timeout_ms, coalesce(r.run_at, now()),
  r.backoff_base_ms, r.backoff_cap_ms, r.state, r.unmet, r.has_dependencies, r.has_dependents, r.concurrency_key, r.limited, r.idempotency_key
FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::int[], $6::int[], $7::int[], $8::timestamptz[],
  $9::int[], $10::int[], $11::text[], $12::int[], $13::bool[], $14::bool[], $15::text[], $16::bool[], $17::text[]) WITH ORDINALITY
  AS r(namespace, job_type, input_type_url, input, priority, max_attempts, timeout_ms, run_at, backoff_base_ms, backoff_cap_ms,
    state, unmet, has_dependencies, has_dependents, concurrency_key, limited, idempotency_key, n)
ORDER BY r.n
ON CONFLICT (namespace, job_type, idempotency_key) WHERE idempotency_key IS NOT NULL AND NOT key_released DO NOTHING
RETURNING ${TASK_COLUMNS}`;

/** Inserts the tasks as planned; returns those inserted (all but any whose key is held), in the order given. */
export async function taskInsertGraph(db: Db, tasks: readonly NewTask[], starts: readonly GraphStart[]): Promise<TaskRecord[]> {
  const rows = await db.query<TaskRow>(SQL, [
    ...newTaskArrays(tasks),
    starts.map((s) => s.state),
    starts.map((s) => s.unmet),
    starts.map((s) => s.hasDependencies),
    starts.map((s) => s.hasDependents),
    tasks.map((x) => x.concurrencyKey ?? null),
    tasks.map((x) => x.limited === true),
    tasks.map((x) => x.idempotencyKey ?? null),
  ]);
  return rows.map(taskFromRow).sort(byId);
}
