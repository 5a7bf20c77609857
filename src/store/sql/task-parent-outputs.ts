/** The outputs of the dependencies of claimed tasks: read only for claims that hold such tasks. */
import type { ParentOutput } from "../../core/task.js";
import type { Db } from "../db.js";

// Edges by the primary key of task_dependency (child_id first), each parent by its primary key
// (a LATERAL lookup, so no plan can turn it into a scan of the task table). The parents are
// SUCCEEDED, so their outputs no longer change, and retention keeps them while a dependent is
// unfinished: reading them after the claim committed sees what the child was unblocked by.
const SQL = `
SELECT d.child_id::text AS child_id, p.id::text AS id, p.job_type, p.output_type_url, p.output
FROM task_dependency d
CROSS JOIN LATERAL (SELECT t.id, t.job_type, t.output_type_url, t.output FROM task t WHERE t.id = d.parent_id) p
WHERE d.child_id = ANY($1::bigint[])
ORDER BY d.child_id, d.parent_id`;

/** Each task's dependencies with their outputs, in ascending id order. */
export async function taskParentOutputs(db: Db, taskIds: readonly string[]): Promise<Map<string, ParentOutput[]>> {
  const rows = await db.query<{ child_id: string; id: string; job_type: string; output_type_url: string | null; output: Buffer | null }>(SQL, [taskIds]);
  const byTask = new Map<string, ParentOutput[]>();
  for (const r of rows) {
    const list = byTask.get(r.child_id) ?? [];
    list.push({ taskId: r.id, jobType: r.job_type, output: r.output_type_url === null ? null : { typeUrl: r.output_type_url, value: r.output ?? Buffer.alloc(0) } });
    byTask.set(r.child_id, list);
  }
  return byTask;
}
