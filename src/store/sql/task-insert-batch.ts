/** Inserts many tasks in one statement (arrays through unnest): the Submit and SubmitBatch hot path. */
import type { NewTask, TaskRecord } from "../../core/task.js";
import type { Db } from "../db.js";
import { TASK_COLUMNS, taskFromRow, type TaskRow } from "./task-columns.js";

// One statement whatever the batch size. The statement-level trigger task_notify_inserted (migration
// 0001) sends one NOTIFY per (namespace, job type) when the transaction commits, to wake dispatchers.
// Ids come from an identity column, assigned in input order, so sorting by id restores that order.
const SQL = `
INSERT INTO task AS t (namespace, job_type, input_type_url, input, priority, max_attempts, timeout_ms, run_at,
  backoff_base_ms, backoff_cap_ms)
SELECT r.namespace, r.job_type, r.input_type_url, r.input, r.priority, r.max_attempts, r.timeout_ms, coalesce(r.run_at, now()),
  r.backoff_base_ms, r.backoff_cap_ms
FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::int[], $6::int[], $7::int[], $8::timestamptz[],
  $9::int[], $10::int[])
  AS r(namespace, job_type, input_type_url, input, priority, max_attempts, timeout_ms, run_at, backoff_base_ms, backoff_cap_ms)
RETURNING ${TASK_COLUMNS}`;

/** Inserts the tasks as PENDING and returns them in the order given. */
export async function taskInsertBatch(db: Db, tasks: readonly NewTask[]): Promise<TaskRecord[]> {
  const rows = await db.query<TaskRow>(SQL, [
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
  ]);
  return rows.map(taskFromRow).sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1));
}
