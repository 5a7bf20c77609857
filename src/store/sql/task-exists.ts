/** Which of the named tasks exist in a namespace (a plain read: no locks). */
import type { Db } from "../db.js";

const SQL = `SELECT id::text AS id FROM task WHERE id = ANY($1::bigint[]) AND namespace = $2`;

/** The ids that exist in the namespace. */
export async function taskExists(db: Db, namespace: string, ids: readonly string[]): Promise<Set<string>> {
  const rows = await db.query<{ id: string }>(SQL, [ids, namespace]);
  return new Set(rows.map((r) => r.id));
}
