/** Locks the tasks a submit or retry depends on (FOR SHARE) and reads their current states. */
import type { TaskState } from "../../core/task-state.js";
import type { Db } from "../db.js";

// FOR SHARE until the caller's transaction ends: a statement finishing one of these tasks waits
// for it, and its settle trigger then sees the dependents written here; if it finished first,
// this waits for its commit and reads the finished state. Either way no dependent is missed. Locks
// are taken in id order (only task rows: the job type is read, not locked). With `skipLocked`,
// rows another transaction holds (a report being written) are left out instead of waited for, so
// the caller never waits while it holds some: it retries instead, and a deadlock with a
// multi-row writer cannot form.
// `expiring`: the task finished, and retention deletes it within $3 ms (half its retention if that
// is shorter, so a short retention still leaves time to name it) or may already, by the
// database's clock, the one the pruner uses. The pruner (task-prune-finished.ts) sees a dependent
// only once it is committed, so the caller must not name such a task (see RETENTION_MARGIN_MS).
const SQL = `
SELECT t.id::text AS id, t.state, t.has_dependents,
  t.finished_at + jt.retention_ms * interval '1 millisecond' AS deleted_after,
  coalesce(t.finished_at + (jt.retention_ms - least($3, jt.retention_ms / 2)) * interval '1 millisecond' <= now(), false) AS expiring
FROM task t
LEFT JOIN job_type jt ON jt.namespace = t.namespace AND jt.name = t.job_type
WHERE t.id = ANY($1::bigint[]) AND t.namespace = $2
ORDER BY t.id
FOR SHARE OF t`;
const SKIP_LOCKED_SQL = `${SQL} SKIP LOCKED`;

/** A dependency as locked. */
export interface LockedDependency {
  id: string;
  state: TaskState;
  has_dependents: boolean;
  /** When retention may delete it (finished, and its job type has a retention), else null. */
  deleted_after: Date | string | null;
  /** Retention deletes it within the margin asked for, or may already. */
  expiring: boolean;
}

/**
 * Locks the named tasks of the namespace; absent ids do not exist there (or, with skipLocked, are
 * held by another transaction). `marginMs` sets what counts as `expiring`.
 */
export async function taskDependencyLock(db: Db, namespace: string, ids: readonly string[], skipLocked: boolean, marginMs: number): Promise<LockedDependency[]> {
  return db.query<LockedDependency>(skipLocked ? SKIP_LOCKED_SQL : SQL, [ids, namespace, marginMs]);
}
