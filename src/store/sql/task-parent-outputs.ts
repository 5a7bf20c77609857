/** The outputs of the dependencies of claimed tasks: read only for claims that hold such tasks. */
import type { ParentOutput } from "../../core/task.js";
import type { Db } from "../db.js";

// Edges by the primary key of task_dependency (child_id first), each parent by its primary key
// (a LATERAL lookup, so no plan can turn it into a scan of the task table). The parents are
// SUCCEEDED, so their outputs no longer change, and retention keeps them while a dependent is
// unfinished: reading them after the claim committed sees what the child was unblocked by. LEFT
// JOIN: an edge outlives its parent (task-prune-finished.ts), so a parent deleted all the same
// (a race Submit's retention margin rules out in practice) shows as missing instead of vanishing.
const SQL = `
SELECT d.child_id::text AS child_id, d.parent_id::text AS parent_id, p.id IS NULL AS missing, p.job_type, p.output_type_url, p.output
FROM task_dependency d
LEFT JOIN LATERAL (SELECT t.id, t.job_type, t.output_type_url, t.output FROM task t WHERE t.id = d.parent_id) p ON true
WHERE d.child_id = ANY($1::bigint[])
ORDER BY d.child_id, d.parent_id`;

/** One claimed task's dependencies: those that exist, with their outputs, and the ids of any that are gone. */
export interface ParentsOf {
  parents: ParentOutput[];
  missing: string[];
}

/** Each task's dependencies with their outputs, in ascending id order. */
export async function taskParentOutputs(db: Db, taskIds: readonly string[]): Promise<Map<string, ParentsOf>> {
  const rows = await db.query<{ child_id: string; parent_id: string; missing: boolean; job_type: string | null; output_type_url: string | null; output: Buffer | null }>(
    SQL,
    [taskIds],
  );
  const byTask = new Map<string, ParentsOf>();
  for (const r of rows) {
    let entry = byTask.get(r.child_id);
    if (entry === undefined) byTask.set(r.child_id, (entry = { parents: [], missing: [] }));
    if (r.missing) entry.missing.push(r.parent_id);
    else entry.parents.push({ taskId: r.parent_id, jobType: r.job_type!, output: r.output_type_url === null ? null : { typeUrl: r.output_type_url, value: r.output ?? Buffer.alloc(0) } });
  }
  return byTask;
}
