/** Cancels one unfinished task and closes its running attempt, if any. Run inside a transaction. */
import { TASK_TRANSITIONS, type TaskState } from "../../core/task-state.js";
import type { Db } from "../db.js";
import { TASK_COLUMNS, taskFromRow, type TaskRow } from "./task-columns.js";

// The sub-select locks the row (re-reading its latest version under READ COMMITTED), so `previous`
// is the state this statement moved the task out of. Guarded by the transition table's sources.
// Tasks waiting on it end DEAD in this statement's transaction (trigger task_settle_dependents).
const CANCEL_SQL = `
UPDATE task t
SET state = 'cancelled', lease_token = NULL, lease_expires_at = NULL, timeout_at = NULL, finished_at = now(),
  updated_at = now(), last_error = $3, unmet_dependencies = 0
FROM (SELECT id, state FROM task WHERE id = $1 AND namespace = $2 FOR UPDATE) previous
WHERE t.id = previous.id AND previous.state = ANY($4::text[])
RETURNING previous.state AS previous_state, ${TASK_COLUMNS}`;

const CLOSE_ATTEMPT_SQL = `
UPDATE task_attempt SET outcome = 'cancelled', error = $3, ended_at = now()
WHERE task_id = $1 AND number = $2 AND outcome = 'running'`;

/** What a cancel changed. */
export interface CancelledTask {
  previousState: TaskState;
  task: ReturnType<typeof taskFromRow>;
}

/** Cancels the task when its state allows; undefined when it does not exist or may not be cancelled. */
export async function taskCancel(
  db: Db,
  params: { namespace: string; id: string; reason: string },
): Promise<CancelledTask | undefined> {
  const [row] = await db.query<TaskRow & { previous_state: TaskState }>(CANCEL_SQL, [
    params.id,
    params.namespace,
    params.reason,
    TASK_TRANSITIONS.cancel.from,
  ]);
  if (row === undefined) return undefined;
  const task = taskFromRow(row);
  if (row.previous_state === "running") {
    await db.query(CLOSE_ATTEMPT_SQL, [task.id, task.attempt, params.reason]);
  }
  return { previousState: row.previous_state, task };
}
