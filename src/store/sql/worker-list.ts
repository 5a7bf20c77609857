/** ListWorkers: workers of a namespace with their in-flight counts, over all replicas. */
import type { Db } from "../db.js";
import { toDate } from "./task-columns.js";

/** A worker as listed. */
export interface WorkerRecord {
  workerId: string;
  jobTypes: string[];
  credits: number;
  tasksInFlight: number;
  connectedAt: Date;
  lastSeenAt: Date;
  connected: boolean;
}

// In-flight counts come from the tasks themselves (task_worker_idx), so they are right whichever
// replica holds the stream. A worker is connected while its stream is open and it heartbeats.
const SQL = `
SELECT w.id, w.job_types, w.credits, w.connected_at, w.last_seen_at,
  (w.disconnected_at IS NULL AND w.last_seen_at > now() - $2 * interval '1 millisecond') AS connected,
  (SELECT count(*) FROM task t WHERE t.namespace = w.namespace AND t.worker_id = w.id AND t.state = 'running')::int AS in_flight
FROM worker w
WHERE w.namespace = $1 AND ($3 OR (w.disconnected_at IS NULL AND w.last_seen_at > now() - $2 * interval '1 millisecond'))
  AND ($4::text IS NULL OR w.id > $4)
ORDER BY w.id
LIMIT $5`;

/** One page of workers by id, after `afterId`. */
export async function workerList(
  db: Db,
  params: { namespace: string; staleAfterMs: number; includeDisconnected: boolean; afterId: string | null; limit: number },
): Promise<WorkerRecord[]> {
  const rows = await db.query<{ id: string; job_types: string[]; credits: number; connected_at: Date | string; last_seen_at: Date | string; connected: boolean; in_flight: number }>(
    SQL,
    [params.namespace, params.staleAfterMs, params.includeDisconnected, params.afterId, params.limit],
  );
  return rows.map((r) => ({
    workerId: r.id,
    jobTypes: r.job_types,
    credits: r.credits,
    tasksInFlight: r.in_flight,
    connectedAt: toDate(r.connected_at),
    lastSeenAt: toDate(r.last_seen_at),
    connected: r.connected,
  }));
}
