/** Submit: tasks created with a dependency that already ended DEAD or CANCELLED end DEAD at once. */
import { TASK_TRANSITIONS } from "../../core/task-state.js";
import type { Db } from "../db.js";

// The transition `dependency_failed` (waiting -> dead), in the submit's transaction, on tasks it
// has just inserted WAITING; the settle trigger (migration 0030) then ends the tasks of the same
// submit that wait on these, transitively. Found by primary key.
const SQL = `
UPDATE task t
SET state = 'dead', unmet_dependencies = 0, finished_at = now(), updated_at = now(), last_error = r.reason
FROM unnest($1::bigint[], $2::text[]) AS r(id, reason)
WHERE t.id = r.id AND t.state = ANY($3::text[])
RETURNING t.id::text AS id`;

/** Ends the tasks DEAD with their reasons; returns the ids it ended. */
export async function taskDependencyFail(db: Db, failures: readonly { id: string; reason: string }[]): Promise<string[]> {
  if (failures.length === 0) return [];
  const rows = await db.query<{ id: string }>(SQL, [failures.map((f) => f.id), failures.map((f) => f.reason), TASK_TRANSITIONS.dependency_failed.from]);
  return rows.map((r) => r.id);
}
