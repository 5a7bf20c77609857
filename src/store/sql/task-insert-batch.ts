/** Inserts many tasks in one statement (arrays through unnest): the Submit and SubmitBatch hot path. */
import type { NewTask, TaskRecord } from "../../core/task.js";
import type { Db } from "../db.js";
import { byId, newTaskArrays, TASK_COLUMNS, taskFromRow, type TaskRow } from "./task-columns.js";

// One statement whatever the batch size. The statement-level trigger task_notify_inserted (migration
// 0001) sends one NOTIFY per (namespace, job type) of the PENDING rows when the transaction
// commits, to wake dispatchers. Ids come from an identity column, assigned in input order (ORDER
// BY n), so sorting by id restores that order.
//
// A row with a worker id ($11) is a direct hand-off (Dispatcher.planDirect): it is inserted
// RUNNING, attempt 1, leased to that worker, with its attempt row, unless a ready PENDING task of
// its job type with the same or a higher priority is already waiting (`ahead`), or its job type
// has limits after all (the replica's cached copy was out of date): then it is queued
// like the others, so a hand-off never overtakes the queue nor bypasses a limit. The event trigger
// records a directly handed-off task as created PENDING, then moved to RUNNING. `limited` ($13)
// marks the tasks of job types with limits (see migration 0040); tasks without a key pass nulls.
// `rows` is MATERIALIZED so that `direct` is computed once per row: inlined, it was copied into
// each of the five CASEs below, and the first (custom) plans of each connection ran 5x slower
// (56 ms instead of 11 for 1,000 tasks; the generic plans that follow are unchanged).
// `(SELECT $1::text[])` keeps custom plans from estimating fewer rows than the generic plan's 10
// (unnest's estimate is its largest array's, and a sub-select's is the default): knowing a
// one-task batch made them look so much cheaper that PostgreSQL planned every single Submit again
// (measured: 646 plans in 1,320 calls, 1.3 ms of a 1-task insert here; now 14 plans, the same
// generic plan that batches already used, and single inserts 0.7 ms).
const SQL = `
WITH input AS (
  SELECT * FROM unnest((SELECT $1::text[]), $2::text[], $3::text[], $4::bytea[], $5::int[], $6::int[], $7::int[], $8::timestamptz[],
    $9::int[], $10::int[], $11::text[], $12::text[], $13::bool[]) WITH ORDINALITY
    AS r(namespace, job_type, input_type_url, input, priority, max_attempts, timeout_ms, run_at, backoff_base_ms, backoff_cap_ms, worker_id,
      concurrency_key, limited, n)
), ahead AS (
  SELECT k.namespace, k.job_type, top.priority
  FROM (SELECT DISTINCT namespace, job_type FROM input WHERE worker_id IS NOT NULL) k
  CROSS JOIN LATERAL (
    SELECT p.priority FROM task p
    WHERE p.namespace = k.namespace AND p.job_type = k.job_type AND p.state = 'pending' AND p.run_at <= now()
    ORDER BY p.priority DESC, p.run_at, p.id
    LIMIT 1
  ) top
), rows AS MATERIALIZED (
  SELECT i.*, i.worker_id IS NOT NULL AND NOT EXISTS (
      SELECT 1 FROM ahead a WHERE a.namespace = i.namespace AND a.job_type = i.job_type AND a.priority >= i.priority
    ) AND NOT EXISTS (
      SELECT 1 FROM job_type j WHERE j.namespace = i.namespace AND j.name = i.job_type
        AND (j.rate_max_starts IS NOT NULL OR j.max_running IS NOT NULL OR j.max_running_per_key IS NOT NULL)
    ) AS direct
  FROM input i
), inserted AS (
  INSERT INTO task AS t (namespace, job_type, input_type_url, input, priority, max_attempts, timeout_ms, run_at,
    backoff_base_ms, backoff_cap_ms, concurrency_key, limited, state, attempt, worker_id, lease_token, lease_expires_at, timeout_at)
  SELECT r.namespace, r.job_type, r.input_type_url, r.input, r.priority, r.max_attempts, r.timeout_ms, coalesce(r.run_at, now()),
    r.backoff_base_ms, r.backoff_cap_ms, r.concurrency_key, r.limited,
    CASE WHEN r.direct THEN 'running' ELSE 'pending' END,
    CASE WHEN r.direct THEN 1 ELSE 0 END,
    CASE WHEN r.direct THEN r.worker_id END,
    CASE WHEN r.direct THEN gen_random_uuid() END,
    CASE WHEN r.direct THEN now() + (SELECT jt.lease_ms FROM job_type jt WHERE jt.namespace = r.namespace AND jt.name = r.job_type) * interval '1 millisecond' END,
    CASE WHEN r.direct THEN now() + r.timeout_ms * interval '1 millisecond' END
  FROM rows r
  ORDER BY r.n
  RETURNING ${TASK_COLUMNS}, t.lease_token::text AS lease_token
), history AS (
  INSERT INTO task_attempt (task_id, number, worker_id)
  SELECT id::bigint, 1, worker_id FROM inserted WHERE state = 'running'
)
SELECT * FROM inserted`;

/** The inserted tasks in the order given, and the lease token of each one handed off directly (else null). */
export interface InsertedTasks {
  tasks: TaskRecord[];
  leaseTokens: (string | null)[];
}

/**
 * Inserts the tasks as PENDING, or RUNNING for the ones `workerIds` hands to a worker (by index;
 * null queues the task), and returns them in the order given.
 */
export async function taskInsertBatch(db: Db, tasks: readonly NewTask[], workerIds: readonly (string | null)[] = []): Promise<InsertedTasks> {
  const rows = await db.query<TaskRow & { lease_token: string | null }>(SQL, [
    ...newTaskArrays(tasks),
    tasks.map((_, i) => workerIds[i] ?? null),
    tasks.map((x) => x.concurrencyKey ?? null),
    tasks.map((x) => x.limited === true),
  ]);
  rows.sort(byId);
  return { tasks: rows.map(taskFromRow), leaseTokens: rows.map((row) => row.lease_token) };
}
