/** RegisterJobType: create or update a job type in one statement, race-free. */
import type { JobTypeRecord } from "../../core/task.js";
import type { Db } from "../db.js";

// ON CONFLICT on the primary key settles concurrent first registrations inside PostgreSQL; xmax is
// 0 only for a freshly inserted row, which tells the caller whether it created the job type. The
// NOTIFY (sent at commit, to every replica) makes them drop their cached copy and wake the
// sessions of the job type, so changed limits apply to their next claims at once.
const SQL = `
WITH up AS (
  INSERT INTO job_type AS j (namespace, name, input_type, output_type, descriptors, default_priority, default_max_attempts,
    default_timeout_ms, backoff_base_ms, backoff_cap_ms, lease_ms, retention_ms, inline_module, dedup_window_ms,
    max_payload_bytes, rate_max_starts, rate_window_ms, max_running, max_running_per_key)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
  ON CONFLICT (namespace, name) DO UPDATE SET input_type = excluded.input_type, output_type = excluded.output_type,
    descriptors = excluded.descriptors, default_priority = excluded.default_priority,
    default_max_attempts = excluded.default_max_attempts, default_timeout_ms = excluded.default_timeout_ms,
    backoff_base_ms = excluded.backoff_base_ms, backoff_cap_ms = excluded.backoff_cap_ms, lease_ms = excluded.lease_ms,
    retention_ms = excluded.retention_ms, inline_module = excluded.inline_module, dedup_window_ms = excluded.dedup_window_ms,
    max_payload_bytes = excluded.max_payload_bytes,
    rate_max_starts = excluded.rate_max_starts, rate_window_ms = excluded.rate_window_ms,
    max_running = excluded.max_running, max_running_per_key = excluded.max_running_per_key,
    updated_at = now()
  RETURNING (xmax = 0) AS created
)
SELECT up.created, pg_notify('taskwire_ready', json_build_object('ns', $1::text, 'jt', $2::text, 'at', null, 'changed', true)::text)
FROM up`;

/** The fields RegisterJobType writes. */
export type JobTypeFields = Omit<JobTypeRecord, "createdAt" | "updatedAt">;

/** Creates or updates the job type; true when it was created. */
export async function jobTypeUpsert(db: Db, f: JobTypeFields): Promise<boolean> {
  const [row] = await db.query<{ created: boolean }>(SQL, [
    f.namespace,
    f.name,
    f.inputType,
    f.outputType,
    f.descriptors === null ? null : Buffer.from(f.descriptors),
    f.defaultPriority,
    f.defaultMaxAttempts,
    f.defaultTimeoutMs,
    f.backoffBaseMs,
    f.backoffCapMs,
    f.leaseMs,
    f.retentionMs,
    f.inlineModule,
    f.dedupWindowMs,
    f.maxPayloadBytes,
    f.rateLimit?.maxStarts ?? null,
    f.rateLimit?.windowMs ?? null,
    f.maxRunning,
    f.maxRunningPerKey,
  ]);
  return row!.created;
}
