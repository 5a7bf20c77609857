/**
 * The sweeper's statement: attempts whose lease or timeout has passed end as lost or timed out;
 * their tasks retry with backoff or go DEAD, and the holders are told through NOTIFY.
 */
import type { Db } from "../db.js";

// Candidates come from the partial indexes task_lease_expiry_idx and task_timeout_idx. FOR UPDATE
// SKIP LOCKED makes concurrent sweepers (every replica runs one) take disjoint rows, and the state
// guard of the UPDATE makes a row that changed meanwhile a no-op. One statement: the attempt's
// history and the revoke NOTIFY (sent at commit) go with the state change.
const SQL = `
WITH expired AS (
  SELECT id, attempt, worker_id, (timeout_at IS NOT NULL AND timeout_at <= now()) AS timed_out, timeout_ms
  FROM task
  WHERE state = 'running' AND (lease_expires_at <= now() OR timeout_at <= now())
  ORDER BY id
  LIMIT $1
  FOR UPDATE SKIP LOCKED
), swept AS (
  UPDATE task t
  SET state = CASE WHEN t.attempt >= t.max_attempts THEN 'dead' ELSE 'pending' END,
    run_at = CASE WHEN t.attempt >= t.max_attempts THEN t.run_at
      ELSE now() + taskwire_backoff_ms(t.backoff_base_ms, t.backoff_cap_ms, t.attempt, random()) * interval '1 millisecond' END,
    finished_at = CASE WHEN t.attempt >= t.max_attempts THEN now() END,
    lease_token = NULL, lease_expires_at = NULL, timeout_at = NULL, updated_at = now(),
    last_error = CASE WHEN e.timed_out THEN format('attempt %s timed out after %s ms', e.attempt, e.timeout_ms)
      ELSE format('attempt %s lost: worker %s sent no heartbeat within the lease', e.attempt, e.worker_id) END
  FROM expired e
  WHERE t.id = e.id AND t.state = 'running' AND t.attempt = e.attempt
  RETURNING t.id, t.namespace, e.attempt, t.state, e.timed_out, t.last_error
), history AS (
  UPDATE task_attempt a SET outcome = CASE WHEN s.timed_out THEN 'timed_out' ELSE 'lost' END, error = s.last_error, ended_at = now()
  FROM swept s
  WHERE a.task_id = s.id AND a.number = s.attempt
), notified AS (
  SELECT pg_notify('taskwire_revoke', json_build_object('ns', namespace, 'id', id::text, 'attempt', attempt,
    'reason', CASE WHEN timed_out THEN 'timed_out' ELSE 'lease_lost' END, 'message', last_error)::text)
  FROM swept
)
SELECT s.id::text AS id, s.state, s.timed_out FROM swept s, (SELECT count(*) FROM notified) n`;

/** One swept attempt. */
export interface SweptTask {
  id: string;
  state: "pending" | "dead";
  timed_out: boolean;
}

/** Ends up to `limit` expired attempts; returns what it swept. */
export function leaseSweepExpired(db: Db, limit: number): Promise<SweptTask[]> {
  return db.query<SweptTask>(SQL, [limit]);
}
