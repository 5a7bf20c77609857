/**
 * The life of one watcher: optional snapshot, then events read from the replica's ring, or from the
 * database while the watcher is further behind than the ring reaches, with keep-alives while idle.
 * Used by StreamStatus, WaitTask and Submit's wait.
 */
import { TaskwireError } from "../core/errors.js";
import type { EventFilter, TaskEventRecord, TaskRecord } from "../core/task.js";
import type { Db } from "../store/db.js";
import { taskEventCatchUp } from "../store/sql/task-event-read.js";
import type { EventHub, Watcher } from "./event-hub.js";

/** Events a watcher takes per read, from the ring or the database: all it holds of its own. */
const READ_BATCH = 128;

/** What a watcher yields. */
export type StatusItem =
  | { kind: "snapshot"; task: TaskRecord; cursor: bigint }
  | { kind: "event"; event: TaskEventRecord; cursor: bigint }
  | { kind: "keepalive"; cursor: bigint };

/** Reads the next matching events after the watcher's position from the database, through the hub's few catch-up slots. */
async function catchUp(db: Db, hub: EventHub, watcher: Watcher): Promise<void> {
  const read = await hub.catchUpSlots(() =>
    watcher.closed ? undefined : taskEventCatchUp(db, watcher.namespace, watcher.position, watcher.filter, READ_BATCH),
  );
  if (read === undefined) return;
  watcher.queue.push(...read.events);
  if (read.events.length === READ_BATCH) watcher.position = read.events.at(-1)!.seq;
  else if (read.highWater > watcher.position) watcher.position = read.highWater;
}

/**
 * Yields the watcher's items until `signal` aborts; unsubscribes at the end, and at once when
 * `signal` aborts: a consumer stuck writing to a client that stopped reading may never resume
 * this generator (so its `finally` would not run), and the hub must not keep the watcher.
 */
export async function* followEvents(
  db: Db,
  hub: EventHub,
  watcher: Watcher,
  options: { keepaliveMs: number; signal: AbortSignal },
): AsyncGenerator<StatusItem> {
  const onAbort = () => hub.unsubscribe(watcher);
  options.signal.addEventListener("abort", onAbort, { once: true });
  try {
    while (!options.signal.aborted && !watcher.closed) {
      const next = watcher.queue.shift();
      if (next !== undefined) {
        yield { kind: "event", event: next, cursor: next.seq };
        continue;
      }
      if (watcher.failure !== undefined) {
        throw new TaskwireError(
          "DATABASE_UNAVAILABLE",
          "the connection to the database was lost, so this stream could miss events; reconnect and resume with since = the last cursor received",
          { cause: watcher.failure },
        );
      }
      const read = hub.read(watcher, READ_BATCH);
      if (read.kind === "behind") {
        await catchUp(db, hub, watcher);
      } else if (read.kind === "not-started") {
        // The database was unreachable when the feed started: try again shortly, not in a tight loop.
        if (!(await hub.started(watcher.namespace))) await new Promise((resolve) => setTimeout(resolve, 500));
      } else if (read.events.length === 0) {
        const worked = await hub.waitForEvents(watcher, options.keepaliveMs, options.signal);
        if (!worked) yield { kind: "keepalive", cursor: watcher.position };
      }
    }
  } finally {
    options.signal.removeEventListener("abort", onAbort);
    hub.unsubscribe(watcher);
  }
}

/** Builds a filter; used by the handlers after validation. */
export function eventFilter(taskIds: readonly string[], jobTypes: readonly string[], states: EventFilter["states"]): EventFilter {
  return { taskIds, jobTypes, states };
}
