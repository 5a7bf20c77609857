/** ListNamespaces: namespaces by name (primary key order), after a cursor. */
import type { Db } from "../db.js";
import type { NamespaceRecord } from "./namespace-insert.js";
import { toDate } from "./task-columns.js";

const SQL = `
SELECT n.name, n.created_at, n.created_by FROM namespace n
WHERE ($1::text IS NULL OR n.name > $1)
ORDER BY n.name
LIMIT $2`;

/** One page of namespaces after `afterName`. */
export async function namespaceList(db: Db, afterName: string | null, limit: number): Promise<NamespaceRecord[]> {
  const rows = await db.query<{ name: string; created_at: Date | string; created_by: string | null }>(SQL, [afterName, limit]);
  return rows.map((row) => ({ name: row.name, createdAt: toDate(row.created_at), createdBy: row.created_by }));
}
