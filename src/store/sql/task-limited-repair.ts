/** The limited claim, when due: marks the tasks of a job type that got limits as limited. */
import type { Db } from "../db.js";

// Tasks submitted before their job type had limits are not `limited`: the limited claim would not
// see them (task_limited_pending_idx) nor count them (task_limited_running_idx), and the ordinary
// claim skips job types with limits. So the limited claim marks them, PENDING and RUNNING alike
// (tasks already running when a limit is set count against it), and does so again every few
// seconds for a grace period after each change of the job type: a submit or an ordinary claim
// that began before the change committed (a snapshot without the limits) may still leave unmarked
// rows behind it. Rare (a few times after a change) and bounded by the job type's unfinished
// tasks: pending ones through task_claim_idx (or a sequential scan when the planner expects the
// job type to hold much of the table), running ones through task_lease_expiry_idx. Changing
// `limited` changes no state, so no event and no notification.
const SQL = `
WITH marked AS (
  UPDATE task t SET limited = true
  WHERE t.id = ANY(ARRAY(
    SELECT p.id FROM task p WHERE p.namespace = $1 AND p.job_type = $2 AND p.state = 'pending' AND NOT p.limited
    UNION ALL
    SELECT r.id FROM task r WHERE r.state = 'running' AND r.namespace = $1 AND r.job_type = $2 AND NOT r.limited
  ))
  RETURNING t.id
), limiter AS (
  INSERT INTO job_type_limiter AS l (namespace, job_type, repaired_at) VALUES ($1, $2, statement_timestamp())
  ON CONFLICT (namespace, job_type) DO UPDATE SET repaired_at = excluded.repaired_at
)
SELECT count(*)::int AS marked FROM marked`;

/** Marks the job type's unfinished tasks that are not yet limited; returns how many. */
export async function taskLimitedRepair(db: Db, namespace: string, jobType: string): Promise<number> {
  const [row] = await db.query<{ marked: number }>(SQL, [namespace, jobType]);
  return row?.marked ?? 0;
}
