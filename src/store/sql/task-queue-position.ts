/** A pending task's place in its job type's queue, by one window-function query. */
import type { Db } from "../db.js";

// The window orders pending tasks exactly as task-claim-available does (priority DESC, run_at, id),
// reading them through the partial index task_claim_idx.
const SQL = `
SELECT position::int AS position FROM (
  SELECT id, row_number() OVER (ORDER BY priority DESC, run_at, id) - 1 AS position
  FROM task
  WHERE namespace = $1 AND job_type = $2 AND state = 'pending'
) queue
WHERE id = $3`;

/** How many pending tasks of the job type are ahead of this one (0 = next); undefined when it is not pending. */
export async function taskQueuePosition(
  db: Db,
  params: { namespace: string; jobType: string; id: string },
): Promise<number | undefined> {
  const [row] = await db.query<{ position: number }>(SQL, [params.namespace, params.jobType, params.id]);
  return row?.position;
}
