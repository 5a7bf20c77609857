/** Reads one task with its attempts. */
import type { AttemptOutcome, AttemptRecord, TaskRecord } from "../../core/task.js";
import type { Db } from "../db.js";
import { TASK_COLUMNS, taskFromRow, toDate, type TaskRow } from "./task-columns.js";

const TASK_SQL = `SELECT ${TASK_COLUMNS} FROM task t WHERE t.id = $1 AND t.namespace = $2`;

// Served by the primary key (task_id, number) of task_attempt.
const ATTEMPTS_SQL = `
SELECT number, worker_id, outcome, error, started_at, ended_at
FROM task_attempt WHERE task_id = $1 ORDER BY number`;

/** The task of that id in that namespace, or undefined. */
export async function taskGet(db: Db, namespace: string, id: string): Promise<TaskRecord | undefined> {
  const [row] = await db.query<TaskRow>(TASK_SQL, [id, namespace]);
  return row === undefined ? undefined : taskFromRow(row);
}

/** A task's attempts, oldest first. */
export async function taskAttempts(db: Db, id: string): Promise<AttemptRecord[]> {
  const rows = await db.query<{
    number: number;
    worker_id: string;
    outcome: AttemptOutcome;
    error: string | null;
    started_at: Date | string;
    ended_at: Date | string | null;
  }>(ATTEMPTS_SQL, [id]);
  return rows.map((r) => ({
    number: r.number,
    workerId: r.worker_id,
    outcome: r.outcome,
    error: r.error,
    startedAt: toDate(r.started_at),
    endedAt: toDate(r.ended_at),
  }));
}
