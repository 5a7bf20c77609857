/** CreateNamespace: one row; an existing name inserts nothing (the caller answers ALREADY_EXISTS). */
import type { Db } from "../db.js";
import { toDate } from "./task-columns.js";

const SQL = `
INSERT INTO namespace AS n (name, created_by) VALUES ($1, $2)
ON CONFLICT (name) DO NOTHING
RETURNING n.name, n.created_at, n.created_by`;

/** A namespace as listed. */
export interface NamespaceRecord {
  name: string;
  createdAt: Date;
  createdBy: string | null;
}

/** Creates the namespace; undefined when the name is taken. */
export async function namespaceInsert(db: Db, name: string, actor: string): Promise<NamespaceRecord | undefined> {
  const [row] = await db.query<{ name: string; created_at: Date | string; created_by: string | null }>(SQL, [name, actor]);
  return row === undefined ? undefined : { name: row.name, createdAt: toDate(row.created_at), createdBy: row.created_by };
}
