/** Records one admin operation in the audit log; run in the transaction that makes the change. */
import type { AuditAction } from "../../core/audit.js";
import type { Db } from "../db.js";

// An append: no locks beyond the foreign key's share lock on the namespace row.
const SQL = `INSERT INTO audit_event (action, namespace, target, actor) VALUES ($1, $2, $3, $4)`;

/** Appends the entry. */
export async function auditEventInsert(db: Db, entry: { action: AuditAction; namespace: string; target: string; actor: string }): Promise<void> {
  await db.query(SQL, [entry.action, entry.namespace, entry.target, entry.actor]);
}
