/** ListAuditEvents and `taskwire audit list`: audit entries newest first, of one namespace or all. */
import type { AuditAction, AuditRecord } from "../../core/audit.js";
import type { Db } from "../db.js";
import { toDate } from "./task-columns.js";

// One namespace: audit_event_namespace_idx (namespace, id desc); every namespace ($1 NULL): the
// primary key read backwards. Keyset paging on id; a plain read, no locks.
const SQL = `
SELECT a.id::text AS id, a.at, a.action, a.namespace, a.target, a.actor FROM audit_event a
WHERE ($1::text IS NULL OR a.namespace = $1)
  AND ($2::bigint IS NULL OR a.id < $2)
ORDER BY a.id DESC
LIMIT $3`;

/** One page of entries older than `beforeId` (the previous page's last), in `namespace` or every one (null). */
export async function auditEventList(db: Db, params: { namespace: string | null; beforeId: string | null; limit: number }): Promise<AuditRecord[]> {
  const rows = await db.query<{ id: string; at: Date | string; action: AuditAction; namespace: string; target: string; actor: string }>(SQL, [
    params.namespace,
    params.beforeId,
    params.limit,
  ]);
  return rows.map((row) => ({ ...row, at: toDate(row.at) }));
}
