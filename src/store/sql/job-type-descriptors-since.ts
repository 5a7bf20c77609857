/** Descriptor sets of job types changed since a time: keeps every replica's JSON registry current. */
import type { Db } from "../db.js";
import { toDate } from "./task-columns.js";

const SQL = `
SELECT namespace, descriptors, updated_at FROM job_type
WHERE descriptors IS NOT NULL AND updated_at > $1
ORDER BY updated_at`;

/** Descriptor sets (with their job types' namespaces) updated after `since`, oldest first, with the newest update time seen. */
export async function jobTypeDescriptorsSince(db: Db, since: Date): Promise<{ descriptors: { namespace: string; bytes: Uint8Array }[]; newest: Date }> {
  const rows = await db.query<{ namespace: string; descriptors: Buffer; updated_at: Date | string }>(SQL, [since]);
  const newest = rows.length === 0 ? since : toDate(rows.at(-1)!.updated_at);
  return { descriptors: rows.map((r) => ({ namespace: r.namespace, bytes: r.descriptors })), newest };
}
