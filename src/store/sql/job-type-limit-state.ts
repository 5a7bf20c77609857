/** The limited claim, step 2: the job type's limits and what counts against them, read under its lock. */
import type { StartBucket } from "../../core/claim-limits.js";
import type { JobTypeLimits } from "../../core/task.js";
import type { Db } from "../db.js";

// One row of job_type (primary key), its limiter row, and:
// - the RUNNING limited tasks of the job type, counted through task_limited_running_idx and only up
//   to max_running (more cannot change the answer: no free slot);
// - the start buckets that still count, i.e. end within the rate window before now, through the
//   primary key of job_type_start_bucket (at most ~101 rows);
// - whether the repair (task-limited-repair.ts) is due: never ran, or last ran before the end of
//   the grace period after the job type's last change and at least $4 ms ago;
// - the statement's time, the database clock every replica shares; it is after the lock was taken
//   (an earlier statement), so it never goes back from one holder to the next.
const SQL = `
SELECT j.rate_max_starts, j.rate_window_ms, j.max_running, j.max_running_per_key, j.lease_ms, l.key_cursor,
  (l.repaired_at IS NULL OR (l.repaired_at < j.updated_at + $3::int * interval '1 millisecond'
    AND l.repaired_at <= statement_timestamp() - $4::int * interval '1 millisecond')) AS needs_repair,
  CASE WHEN j.max_running IS NULL THEN 0 ELSE (
    SELECT count(*)::int FROM (
      SELECT 1 FROM task r WHERE r.namespace = $1 AND r.job_type = $2 AND r.state = 'running' AND r.limited LIMIT j.max_running
    ) c
  ) END AS running,
  b.ends_ms, b.starts,
  (extract(epoch FROM statement_timestamp()) * 1000)::float8 AS at_ms
FROM job_type j
LEFT JOIN job_type_limiter l ON l.namespace = j.namespace AND l.job_type = j.name
CROSS JOIN LATERAL (
  SELECT array_agg((extract(epoch FROM s.ends_at) * 1000)::float8 ORDER BY s.ends_at) AS ends_ms, array_agg(s.starts ORDER BY s.ends_at) AS starts
  FROM job_type_start_bucket s
  WHERE s.namespace = $1 AND s.job_type = $2 AND j.rate_window_ms IS NOT NULL
    AND s.ends_at > statement_timestamp() - j.rate_window_ms * interval '1 millisecond'
) b
WHERE j.namespace = $1 AND j.name = $2`;

interface Row {
  rate_max_starts: number | null;
  rate_window_ms: number | null;
  max_running: number | null;
  max_running_per_key: number | null;
  lease_ms: number;
  key_cursor: string | null;
  needs_repair: boolean;
  running: number;
  ends_ms: (number | string)[] | null;
  starts: (number | string)[] | null;
  at_ms: number | string;
}

/** A limited job type's state at `atMs` (the database's clock, epoch ms). */
export interface LimitState extends JobTypeLimits {
  leaseMs: number;
  /** The round-robin position: null before the first claim, "" after the group without a key. */
  cursor: string | null;
  needsRepair: boolean;
  /** RUNNING limited tasks of the job type, at most maxRunning (0 when maxRunning is null). */
  running: number;
  /** Start buckets still counted at atMs (empty without a rate limit). */
  buckets: StartBucket[];
  atMs: number;
}

/** Reads the state; undefined when the job type does not exist. */
export async function jobTypeLimitState(db: Db, params: { namespace: string; jobType: string; repairGraceMs: number; repairEveryMs: number }): Promise<LimitState | undefined> {
  const [row] = await db.query<Row>(SQL, [params.namespace, params.jobType, params.repairGraceMs, params.repairEveryMs]);
  if (row === undefined) return undefined;
  const ends = row.ends_ms ?? [];
  const starts = row.starts ?? [];
  return {
    rateLimit: row.rate_max_starts === null || row.rate_window_ms === null ? null : { maxStarts: row.rate_max_starts, windowMs: row.rate_window_ms },
    maxRunning: row.max_running,
    maxRunningPerKey: row.max_running_per_key,
    leaseMs: row.lease_ms,
    cursor: row.key_cursor,
    needsRepair: row.needs_repair,
    running: row.running,
    buckets: ends.map((end, i) => ({ endsAtMs: Number(end), starts: Number(starts[i]) })),
    atMs: Number(row.at_ms),
  };
}
