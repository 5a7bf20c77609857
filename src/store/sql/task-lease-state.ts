/**
 * Explains rejected reports, and names the job types of tasks reported on a stream that does not
 * hold them: the current state and lease of the tasks named (the rare path).
 */
import type { TaskState } from "../../core/task-state.js";
import type { Db } from "../db.js";

const SQL = `
SELECT id::text AS id, job_type, state, attempt, lease_token::text AS lease_token
FROM task
WHERE id = ANY($1::bigint[]) AND namespace = $2`;

/** The current lease of a task. */
export interface LeaseState {
  id: string;
  job_type: string;
  state: TaskState;
  attempt: number;
  lease_token: string | null;
}

/** Looks up the named tasks of one namespace; absent ids do not exist there. */
export async function taskLeaseState(db: Db, namespace: string, ids: readonly string[]): Promise<Map<string, LeaseState>> {
  const rows = await db.query<LeaseState>(SQL, [ids, namespace]);
  return new Map(rows.map((row) => [row.id, row]));
}
