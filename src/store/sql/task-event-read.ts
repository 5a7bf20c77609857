/** Reads task events: a range of a namespace (live fan-out) or a filtered page (catch-up, replay). */
import type { EventFilter, TaskEventKind, TaskEventRecord } from "../../core/task.js";
import type { TaskState } from "../../core/task-state.js";
import type { Db } from "../db.js";
import { toDate } from "./task-columns.js";

/** Characters of an error an event carries. */
export const EVENT_ERROR_CHARS = 1_000;

// An event carries the first 1,000 characters of an error (the task and its attempts keep it all),
// so every event is small and what watchers hold is bounded by their event counts.
const COLUMNS = `e.namespace, e.seq::text AS seq, e.task_id::text AS task_id, e.job_type, e.kind, e.state, e.previous_state,
  e.attempt, e.progress, e.progress_message, left(e.error, ${EVENT_ERROR_CHARS}) AS error, e.worker_id, e.at, e.actor`;

interface EventRow {
  namespace: string;
  seq: string;
  task_id: string;
  job_type: string;
  kind: TaskEventKind;
  state: TaskState;
  previous_state: TaskState | null;
  attempt: number;
  progress: number;
  progress_message: string;
  error: string | null;
  worker_id: string | null;
  at: Date | string;
  actor: string | null;
}

function eventFromRow(r: EventRow): TaskEventRecord {
  return {
    namespace: r.namespace,
    seq: BigInt(r.seq),
    taskId: r.task_id,
    jobType: r.job_type,
    kind: r.kind,
    state: r.state,
    previousState: r.previous_state,
    attempt: r.attempt,
    progress: r.progress,
    progressMessage: r.progress_message,
    error: r.error,
    workerId: r.worker_id,
    at: toDate(r.at),
    actor: r.actor,
  };
}

// A primary-key range scan of (namespace, seq).
const RANGE_SQL = `
SELECT ${COLUMNS} FROM task_event e
WHERE e.namespace = $1 AND e.seq > $2 AND e.seq <= $3
ORDER BY e.seq
LIMIT $4`;

/** Every event of a namespace in (after, upTo], oldest first, at most `limit`. */
export async function taskEventRange(db: Db, namespace: string, after: bigint, upTo: bigint, limit: number): Promise<TaskEventRecord[]> {
  const rows = await db.query<EventRow>(RANGE_SQL, [namespace, after.toString(), upTo.toString(), limit]);
  return rows.map(eventFromRow);
}

// The high-water mark and the events are read in one statement, so they come from one snapshot:
// every event up to the mark is committed and visible (the counter and the events commit together).
const CATCH_UP_SQL = `
WITH hw AS (SELECT event_seq FROM namespace WHERE name = $1)
SELECT hw.event_seq::text AS high_water, ${COLUMNS}
FROM hw LEFT JOIN LATERAL (
  SELECT * FROM task_event e
  WHERE e.namespace = $1 AND e.seq > $2 AND e.seq <= hw.event_seq
    AND (cardinality($3::bigint[]) = 0 OR e.task_id = ANY($3::bigint[]))
    AND (cardinality($4::text[]) = 0 OR e.job_type = ANY($4::text[]))
    AND (cardinality($5::text[]) = 0 OR e.state = ANY($5::text[]))
  ORDER BY e.seq
  LIMIT $6
) e ON true
ORDER BY e.seq`;

/** Matching events after `after`, at most `limit`, and the namespace's high-water mark at that moment. */
export async function taskEventCatchUp(
  db: Db,
  namespace: string,
  after: bigint,
  filter: EventFilter,
  limit: number,
): Promise<{ events: TaskEventRecord[]; highWater: bigint }> {
  const rows = await db.query<EventRow & { high_water: string | null }>(CATCH_UP_SQL, [
    namespace,
    after.toString(),
    filter.taskIds,
    filter.jobTypes,
    filter.states,
    limit,
  ]);
  const highWater = BigInt(rows[0]?.high_water ?? "0");
  return { events: rows.filter((r) => r.seq !== null).map(eventFromRow), highWater };
}

/** The namespace's highest committed event sequence. */
export async function namespaceEventSeq(db: Db, namespace: string): Promise<bigint> {
  const [row] = await db.query<{ seq: string }>("SELECT event_seq::text AS seq FROM namespace WHERE name = $1", [namespace]);
  return BigInt(row?.seq ?? "0");
}
