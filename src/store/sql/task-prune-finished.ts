/** Retention: deletes finished tasks older than their job type's retention, a bounded batch at a time. */
import type { Db } from "../db.js";

// The oldest expired finished tasks, found per job type through task_finished_idx (so pending and
// running rows, the claim path's, are never read or locked); their attempts and events are deleted
// by the same statement (no foreign keys: migration 0007), each found by `= ANY(ARRAY(...))`, an
// index lookup per id whatever the planner guesses of the batch's size. SKIP LOCKED: replicas pruning at once take disjoint rows, and a row
// someone is updating (a Retry) is left for the next pass.
// Dependencies (migration 0030): a task with dependents is kept while any of them is unfinished
// (they may still need its output); a task's own edges go with it. An edge whose parent is gone
// stays until its child goes, so the child still names it.
// A Retry of a dependent locks the parents it reads (FOR SHARE): SKIP LOCKED leaves them here.
// A dependent committed while this statement runs is not in its snapshot, so NOT EXISTS misses it;
// Submit and Retry therefore refuse parents within a minute of their retention (RETENTION_MARGIN_MS
// in src/core/dependencies.ts), and a claim of a task whose parent is gone all the same ends it
// DEAD instead of running it without that parent (src/dispatch/claim-with-parents.ts).
const SQL = `
WITH doomed AS (
  SELECT t.id FROM job_type jt
  CROSS JOIN LATERAL (
    SELECT t.id FROM task t
    WHERE t.namespace = jt.namespace AND t.job_type = jt.name AND t.finished_at IS NOT NULL
      AND t.finished_at < now() - jt.retention_ms * interval '1 millisecond'
      AND (NOT t.has_dependents OR NOT EXISTS (
        SELECT 1 FROM task_dependency d JOIN task c ON c.id = d.child_id WHERE d.parent_id = t.id AND c.finished_at IS NULL))
    ORDER BY t.finished_at
    LIMIT $1
    FOR UPDATE OF t SKIP LOCKED
  ) t
  WHERE jt.retention_ms IS NOT NULL
  LIMIT $1
), gone AS (
  DELETE FROM task t WHERE t.id = ANY(ARRAY(SELECT id FROM doomed))
  RETURNING t.id
), attempts AS (
  DELETE FROM task_attempt a WHERE a.task_id = ANY(ARRAY(SELECT id FROM gone))
), events AS (
  DELETE FROM task_event e WHERE e.task_id = ANY(ARRAY(SELECT id FROM gone))
), dependencies AS (
  DELETE FROM task_dependency d WHERE d.child_id = ANY(ARRAY(SELECT id FROM gone))
)
SELECT id FROM gone`;

/** Deletes up to `limit` expired finished tasks (with attempts and events); returns how many. */
export async function taskPruneFinished(db: Db, limit: number): Promise<number> {
  const rows = await db.query<{ id: string }>(SQL, [limit]);
  return rows.length;
}
