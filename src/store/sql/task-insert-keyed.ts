/** Keyed Submit, step 2: inserts tasks, skipping those whose key another task holds. */
import type { NewTask, TaskRecord } from "../../core/task.js";
import type { Db } from "../db.js";
import { byId, newTaskArrays, TASK_COLUMNS, taskFromRow, type TaskRow } from "./task-columns.js";

// As task-insert-batch.ts (without direct hand-off), plus the key. ON CONFLICT on the partial unique index
// task_idempotency_idx: a row whose key is held is skipped (DO NOTHING), and when the holder is a
// concurrent, uncommitted insert, PostgreSQL waits for it to commit or roll back first, so the
// race is settled by the index, never by an error. Rows without a key never conflict. Ids are
// assigned in input order (skipped rows use one up too).
const SQL = `
INSERT INTO task AS t (namespace, job_type, input_type_url, input, priority, max_attempts, timeout_ms, run_at,
  backoff_base_ms, backoff_cap_ms, idempotency_key, concurrency_key, limited)
SELECT r.namespace, r.job_type, r.input_type_url, r.input, r.priority, r.max_attempts, r.timeout_ms, coalesce(r.run_at, now()),
  r.backoff_base_ms, r.backoff_cap_ms, r.idempotency_key, r.concurrency_key, r.limited
FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::int[], $6::int[], $7::int[], $8::timestamptz[],
  $9::int[], $10::int[], $11::text[], $12::text[], $13::bool[])
  AS r(namespace, job_type, input_type_url, input, priority, max_attempts, timeout_ms, run_at, backoff_base_ms, backoff_cap_ms, idempotency_key,
    concurrency_key, limited)
ON CONFLICT (namespace, job_type, idempotency_key) WHERE idempotency_key IS NOT NULL AND NOT key_released DO NOTHING
RETURNING ${TASK_COLUMNS}`;

/** Inserts the tasks whose key is free (and all without a key); returns those inserted, in id order. */
export async function taskInsertKeyed(db: Db, tasks: readonly NewTask[]): Promise<TaskRecord[]> {
  const rows = await db.query<TaskRow>(SQL, [
    ...newTaskArrays(tasks),
    tasks.map((x) => x.idempotencyKey ?? null),
    tasks.map((x) => x.concurrencyKey ?? null),
    tasks.map((x) => x.limited === true),
  ]);
  return rows.map(taskFromRow).sort(byId);
}
