/** Locks the tasks a submit or retry depends on (FOR SHARE) and reads their current states. */
import type { TaskState } from "../../core/task-state.js";
import type { Db } from "../db.js";

// FOR SHARE until the caller's transaction ends: a statement finishing one of these tasks waits
// for it, and its settle trigger then sees the dependents written here; if it finished first,
// this waits for its commit and reads the finished state. Either way no dependent is missed. Locks
// are taken in id order. With `skipLocked`, rows another transaction holds (a report being
// written) are left out instead of waited for, so the caller never waits while it holds some:
// it retries instead, and a deadlock with a multi-row writer cannot form.
const SQL = `
SELECT id::text AS id, state, has_dependents FROM task
WHERE id = ANY($1::bigint[]) AND namespace = $2
ORDER BY id
FOR SHARE`;
const SKIP_LOCKED_SQL = `${SQL} SKIP LOCKED`;

/** A dependency as locked. */
export interface LockedDependency {
  id: string;
  state: TaskState;
  has_dependents: boolean;
}

/** Locks the named tasks of the namespace; absent ids do not exist there (or, with skipLocked, are held by another transaction). */
export async function taskDependencyLock(db: Db, namespace: string, ids: readonly string[], skipLocked: boolean): Promise<LockedDependency[]> {
  return db.query<LockedDependency>(skipLocked ? SKIP_LOCKED_SQL : SQL, [ids, namespace]);
}
