/** Submit: writes the edges of the tasks it created (child waits for parent). */
import type { Db } from "../db.js";

// One statement for the whole submit; the primary key (child_id, parent_id) holds each edge once,
// and task_dependency_order_check (parent older than child) keeps graphs acyclic.
const SQL = `INSERT INTO task_dependency (child_id, parent_id) SELECT * FROM unnest($1::bigint[], $2::bigint[])`;

/** Inserts [child, parent] edges. */
export async function taskDependencyInsert(db: Db, edges: readonly (readonly [string, string])[]): Promise<void> {
  if (edges.length === 0) return;
  await db.query(SQL, [edges.map((e) => e[0]), edges.map((e) => e[1])]);
}
