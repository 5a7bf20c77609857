/** Submit, before its transaction: marks the tasks it will name as dependencies as having dependents. */
import type { Db } from "../db.js";

// Run on its own (committed before the submit's transaction locks these rows), so any statement
// that finishes one of them afterwards sees the flag on the row it writes and the settle trigger
// (migration 0030) looks for its dependents. A flag left by a submit that then fails costs only
// that look. Only unflagged rows are written (and locked): after a task's first dependent this
// changes nothing. Primary-key lookups; other namespaces' tasks are never touched. With
// `skipLocked`, rows another transaction holds are left for the caller's next attempt instead of
// waited for (waiting while holding others could close a lock cycle with a multi-row report).
const SQL = `
UPDATE task SET has_dependents = true
WHERE id = ANY($1::bigint[]) AND namespace = $2 AND NOT has_dependents`;
const SKIP_LOCKED_SQL = `
UPDATE task SET has_dependents = true
WHERE id = ANY(ARRAY(
  SELECT id FROM task WHERE id = ANY($1::bigint[]) AND namespace = $2 AND NOT has_dependents
  ORDER BY id FOR NO KEY UPDATE SKIP LOCKED))`;

/** Flags the tasks (of the namespace) that are not flagged yet (with skipLocked: those no one else holds). */
export async function taskDependencyFlag(db: Db, namespace: string, ids: readonly string[], skipLocked: boolean): Promise<void> {
  await db.query(skipLocked ? SKIP_LOCKED_SQL : SQL, [ids, namespace]);
}
