/** The admin audit log as the domain sees it: which admin operations are recorded, and an entry. */

/** What an audited operation did (the audit_event.action CHECK lists the same values). */
export const AUDIT_ACTIONS = ["namespace_created", "api_key_created", "api_key_revoked"] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

/** One entry: written in the same transaction as the change it records, never changed afterwards. */
export interface AuditRecord {
  /** Increases in write order (a bigint as decimal text). */
  id: string;
  at: Date;
  action: AuditAction;
  /** The namespace acted in: the one created, or the key's. */
  namespace: string;
  /** The namespace's name, or the key's id. */
  target: string;
  /** A key id, "cli" or "dev" (src/core/api-key.ts). */
  actor: string;
}
