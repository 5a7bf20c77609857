/** Claims up to n ready tasks for a worker in one statement: the dispatch hot path. */
import type { Assignment } from "../../core/task.js";
import type { Db } from "../db.js";
import { toDate } from "./task-columns.js";

// Served by the partial index task_claim_idx (namespace, job_type, priority DESC, run_at, id) WHERE
// state = 'pending', read in order once per job type (job_type = ANY(...) would make PostgreSQL
// fetch and sort every pending row of the types), each scan stopping after $3 rows; the best $3
// of those are claimed. FOR UPDATE SKIP LOCKED lets concurrent claimers (any replica) take
// disjoint rows without waiting; the statement commits on its own, so the row's state is the lock
// from then on and no transaction stays open while the task runs. The attempt's history row is
// written by the same statement. The lease length is the job type's current one.
// The UPDATE finds its rows by `id = ANY(ARRAY(...))`, a primary-key lookup per row, and joins
// nothing: joined to the picked ids (or to job_type), the planner hash-joined a sequential scan of
// the whole table instead (seen: 10 ms per claim at 20,000 tasks, growing with the table).
// A claimed task with dependencies says so (has_dependencies): its parents' outputs are read by a
// second statement, task-parent-outputs (src/dispatch/claim-with-parents.ts), so an ordinary claim
// reads nothing extra: sub-selects here, even under a CASE that skipped them, cost ordinary claims
// about 0.3 us of PostgreSQL CPU per row each (measured: four of them, +1.2 us per claimed row).
// Job types with rate or concurrency limits are left out here (the NULL tests in `leases`): only
// the limited claim (src/dispatch/limited-claim.ts) may start their tasks, so a replica that has
// not yet learned that a job type got limits cannot start its tasks past them.
const SQL = `
WITH leases AS (
  SELECT name, lease_ms FROM job_type WHERE namespace = $1 AND name = ANY($2::text[])
    AND rate_max_starts IS NULL AND max_running IS NULL AND max_running_per_key IS NULL
), candidates AS (
  SELECT c.id, c.priority, c.run_at
  FROM leases jt
  CROSS JOIN LATERAL (
    SELECT t.id, t.priority, t.run_at FROM task t
    WHERE t.namespace = $1 AND t.job_type = jt.name AND t.state = 'pending' AND t.run_at <= now()
    ORDER BY t.priority DESC, t.run_at, t.id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
  ) c
), claimed AS (
  UPDATE task t
  SET state = 'running', attempt = t.attempt + 1, worker_id = $4, lease_token = gen_random_uuid(), updated_at = now(),
    lease_expires_at = now() + (SELECT l.lease_ms FROM leases l WHERE l.name = t.job_type) * interval '1 millisecond',
    timeout_at = now() + t.timeout_ms * interval '1 millisecond', progress = 0, progress_message = ''
  WHERE t.id = ANY(ARRAY(SELECT id FROM candidates ORDER BY priority DESC, run_at, id LIMIT $3))
  RETURNING t.id, t.job_type, t.input_type_url, t.input, t.attempt, t.max_attempts, t.lease_token, t.timeout_ms,
    t.created_at, t.priority, t.run_at, t.lease_expires_at, t.checkpoint, t.has_dependencies
), history AS (
  INSERT INTO task_attempt (task_id, number, worker_id)
  SELECT id, attempt, $4 FROM claimed
)
SELECT id::text AS id, job_type, input_type_url, input, attempt, max_attempts, lease_token::text AS lease_token,
  timeout_ms, created_at, lease_expires_at, checkpoint, has_dependencies
FROM claimed
ORDER BY claimed.priority DESC, claimed.run_at, claimed.id`;

/** The columns a claim returns. */
export interface ClaimRow {
  id: string;
  job_type: string;
  input_type_url: string;
  input: Buffer;
  attempt: number;
  max_attempts: number;
  lease_token: string;
  timeout_ms: number | null;
  created_at: Date | string;
  lease_expires_at: Date | string;
  checkpoint: Buffer | null;
  /** Absent from adoption rows (false). */
  has_dependencies?: boolean;
}

/** Moves up to `limit` ready tasks of `jobTypes` to RUNNING for `workerId`, in claim order. */
export async function taskClaimAvailable(
  db: Db,
  params: { namespace: string; jobTypes: readonly string[]; limit: number; workerId: string },
): Promise<Assignment[]> {
  const rows = await db.query<ClaimRow>(SQL, [params.namespace, params.jobTypes, params.limit, params.workerId]);
  return rows.map((row) => assignmentFromRow(params.namespace, row));
}

/** Maps a claimed (or adopted) row to an Assignment. */
export function assignmentFromRow(namespace: string, row: ClaimRow): Assignment {
  return {
    taskId: row.id,
    namespace,
    jobType: row.job_type,
    input: { typeUrl: row.input_type_url, value: row.input },
    attempt: row.attempt,
    maxAttempts: row.max_attempts,
    leaseToken: row.lease_token,
    timeoutMs: row.timeout_ms,
    createdAt: toDate(row.created_at),
    leaseExpiresAt: toDate(row.lease_expires_at),
    checkpoint: row.checkpoint,
    hasDependencies: row.has_dependencies === true,
    parents: [],
  };
}
