/** The limited claim, step 4: claims the chosen tasks, records their starts and the rotation's position. */
import type { Assignment } from "../../core/task.js";
import type { Db } from "../db.js";
import { assignmentFromRow, type ClaimRow } from "./task-claim-available.js";

// Under the job type's limited-claim lock. The tasks are found by primary key (id = ANY), and each
// is re-checked to be still PENDING (a cancel may have come between the read and this statement).
// Like the ordinary claim, one statement moves them to RUNNING and writes their attempt rows; it
// also adds their starts to the bucket of this statement's time (a bucket is $7 ms wide and counts
// until its end leaves the rate window, see src/core/claim-limits.ts), deletes the buckets that no
// longer count, and stores the round-robin cursor. The attempts' started_at is this statement's
// time, the same one the bucket is chosen by: what the rate limit counts is what the history shows.
// $6 is the rate window (null: no rate limit, and any buckets left from an earlier one go).
const SQL = `
WITH claimed AS (
  UPDATE task t
  SET state = 'running', attempt = t.attempt + 1, worker_id = $4, lease_token = gen_random_uuid(), updated_at = statement_timestamp(),
    lease_expires_at = statement_timestamp() + $5::int * interval '1 millisecond',
    timeout_at = statement_timestamp() + t.timeout_ms * interval '1 millisecond', progress = 0, progress_message = ''
  WHERE t.id = ANY($3::bigint[]) AND t.namespace = $1 AND t.job_type = $2 AND t.state = 'pending' AND t.limited
  RETURNING t.id, t.job_type, t.input_type_url, t.input, t.attempt, t.max_attempts, t.lease_token, t.timeout_ms,
    t.created_at, t.lease_expires_at, t.checkpoint, t.has_dependencies
), history AS (
  INSERT INTO task_attempt (task_id, number, worker_id, started_at)
  SELECT id, attempt, $4, statement_timestamp() FROM claimed
), counted AS (
  SELECT count(*)::int AS n FROM claimed
), bucket AS (
  INSERT INTO job_type_start_bucket AS b (namespace, job_type, bucket_start, ends_at, starts)
  SELECT $1, $2, s.start, s.start + $7::int * interval '1 millisecond', c.n
  FROM counted c
  CROSS JOIN LATERAL (
    SELECT to_timestamp((floor(extract(epoch FROM statement_timestamp()) * 1000 / $7::int) * $7::int / 1000)::float8) AS start
  ) s
  WHERE $6::int IS NOT NULL AND c.n > 0
  ON CONFLICT (namespace, job_type, bucket_start) DO UPDATE SET starts = b.starts + excluded.starts, ends_at = greatest(b.ends_at, excluded.ends_at)
), pruned AS (
  DELETE FROM job_type_start_bucket b
  WHERE b.namespace = $1 AND b.job_type = $2 AND b.ends_at <= statement_timestamp() - coalesce($6::int, 0) * interval '1 millisecond'
), limiter AS (
  INSERT INTO job_type_limiter AS l (namespace, job_type, key_cursor) VALUES ($1, $2, $8)
  ON CONFLICT (namespace, job_type) DO UPDATE SET key_cursor = excluded.key_cursor
)
SELECT id::text AS id, job_type, input_type_url, input, attempt, max_attempts, lease_token::text AS lease_token, timeout_ms,
  created_at, lease_expires_at, checkpoint, has_dependencies, (extract(epoch FROM statement_timestamp()) * 1000)::float8 AS at_ms
FROM claimed`;

/** What the limited claim took, and when (the database's clock, epoch ms; null when it took none). */
export interface LimitedClaimed {
  assignments: Assignment[];
  atMs: number | null;
}

/** Claims `ids` (those still pending) for `workerId`, in the order given; stores `cursor`. */
export async function taskClaimLimited(
  db: Db,
  params: { namespace: string; jobType: string; ids: readonly string[]; workerId: string; leaseMs: number; rateWindowMs: number | null; bucketMs: number; cursor: string | null },
): Promise<LimitedClaimed> {
  const rows = await db.query<ClaimRow & { at_ms: number | string }>(SQL, [
    params.namespace,
    params.jobType,
    params.ids,
    params.workerId,
    params.leaseMs,
    params.rateWindowMs,
    params.bucketMs,
    params.cursor,
  ]);
  const order = new Map(params.ids.map((id, i) => [id, i]));
  rows.sort((a, b) => order.get(a.id)! - order.get(b.id)!);
  return { assignments: rows.map((row) => assignmentFromRow(params.namespace, row)), atMs: rows.length === 0 ? null : Number(rows[0]!.at_ms) };
}
