/** Keyed Submit, step 1: frees the keys of finished tasks past their job type's dedup window. */
import type { Db } from "../db.js";

// Served by task_idempotency_idx (namespace, job_type, idempotency_key) WHERE the key is held. Run in
// the Submit's transaction before its INSERT, so the row lock taken here makes a concurrent Submit
// of the same key wait, then see the key released and find this transaction's task as the holder.
// The statement-level event trigger runs but writes nothing: neither state nor progress changes.
const SQL = `
UPDATE task t SET key_released = true
FROM unnest($1::text[], $2::text[], $3::text[]) AS r(namespace, job_type, key), job_type jt
WHERE jt.namespace = r.namespace AND jt.name = r.job_type
  AND t.namespace = r.namespace AND t.job_type = r.job_type AND t.idempotency_key = r.key AND NOT t.key_released
  AND t.finished_at IS NOT NULL
  AND (jt.dedup_window_ms IS NULL OR t.finished_at <= now() - jt.dedup_window_ms * interval '1 millisecond')
RETURNING t.id::text AS id`;

/** A key within its job type and namespace. */
export interface TaskKey {
  namespace: string;
  jobType: string;
  key: string;
}

/** Releases the expired holders of these keys; returns how many it released. */
export async function taskKeyRelease(db: Db, keys: readonly TaskKey[]): Promise<number> {
  const rows = await db.query<{ id: string }>(SQL, [keys.map((k) => k.namespace), keys.map((k) => k.jobType), keys.map((k) => k.key)]);
  return rows.length;
}
