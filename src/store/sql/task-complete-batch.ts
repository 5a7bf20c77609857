/** Records many successful outcomes in one statement: the completion hot path. */
import type { CompletionReport } from "../../core/task.js";
import type { Db } from "../db.js";
import { inLockOrder } from "../lock-order.js";

// Each row is fenced by (id, namespace, attempt, lease_token): a report from a stale attempt, a
// cancelled task or a wrong token matches nothing and changes nothing. A task has a lease token
// only while RUNNING (constraint task_lease_check), so the token match is the state check too.
// The WHERE names no state on purpose: with `state = 'running'` the planner's generic plan (the
// statement is prepared) scanned the partial index of running tasks in a nested loop against
// every report, 500 x 500 comparisons per batch; without it, each report is one primary-key
// lookup. The attempt's history row is closed by the same statement. `(SELECT $1::bigint[])`
// keeps custom plans of small batches from estimating under the generic plan's 10 rows, so they
// use the generic plan too, as in task-insert-batch.ts (PostgreSQL re-planned about half of them).
const SQL = `
WITH report AS (
  SELECT * FROM unnest((SELECT $1::bigint[]), $2::text[], $3::int[], $4::uuid[], $5::text[], $6::bytea[])
    AS r(id, namespace, attempt, lease_token, output_type_url, output)
), done AS (
  UPDATE task t
  SET state = 'succeeded', output_type_url = r.output_type_url, output = r.output, lease_token = NULL,
    lease_expires_at = NULL, timeout_at = NULL, progress = 1, finished_at = now(), updated_at = now()
  FROM report r
  WHERE t.id = r.id AND t.namespace = r.namespace AND t.attempt = r.attempt
    AND t.lease_token = r.lease_token
  RETURNING t.id, t.attempt, r.lease_token
), history AS (
  UPDATE task_attempt a SET outcome = 'succeeded', ended_at = now()
  FROM done
  WHERE a.task_id = done.id AND a.number = done.attempt
)
SELECT id::text AS id, attempt, lease_token::text AS lease_token FROM done`;

/** Identifies one report: `${taskId}/${attempt}/${leaseToken}`. */
export function reportKey(r: { taskId: string; attempt: number; leaseToken: string }): string {
  return `${r.taskId}/${r.attempt}/${r.leaseToken}`;
}

/** Completes the reports whose lease is current; returns the reportKey of each accepted one. */
export async function taskCompleteBatch(db: Db, given: readonly CompletionReport[]): Promise<Set<string>> {
  // Rows are locked in this order (src/store/lock-order.ts).
  const reports = inLockOrder(given);
  const rows = await db.query<{ id: string; attempt: number; lease_token: string }>(SQL, [
    reports.map((r) => r.taskId),
    reports.map((r) => r.namespace),
    reports.map((r) => r.attempt),
    reports.map((r) => r.leaseToken),
    reports.map((r) => r.output?.typeUrl ?? null),
    reports.map((r) => (r.output === null ? null : Buffer.from(r.output.value.buffer, r.output.value.byteOffset, r.output.value.byteLength))),
  ]);
  return new Set(rows.map((row) => reportKey({ taskId: row.id, attempt: row.attempt, leaseToken: row.lease_token })));
}
