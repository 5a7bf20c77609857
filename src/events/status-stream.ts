/**
 * The life of one watcher: optional snapshot, catch-up from the database, then live events from
 * the hub, with keep-alives while idle. Used by StreamStatus, WaitTask and Submit's wait.
 */
import type { EventFilter, TaskEventRecord, TaskRecord } from "../core/task.js";
import type { Db } from "../store/db.js";
import { taskEventCatchUp } from "../store/sql/task-event-read.js";
import type { EventHub, Watcher } from "./event-hub.js";

/** Rows read per catch-up statement. */
const CATCH_UP_BATCH = 500;

/** What a watcher yields. */
export type StatusItem =
  | { kind: "snapshot"; task: TaskRecord; cursor: bigint }
  | { kind: "event"; event: TaskEventRecord; cursor: bigint }
  | { kind: "keepalive"; cursor: bigint };

/** Reads what the watcher missed from the database, then rejoins the live feed when level with it. */
async function catchUp(db: Db, hub: EventHub, watcher: Watcher): Promise<void> {
  const { events, highWater } = await taskEventCatchUp(db, watcher.namespace, watcher.position, watcher.filter, CATCH_UP_BATCH);
  watcher.queue.push(...events);
  if (events.length === CATCH_UP_BATCH) {
    watcher.position = events.at(-1)!.seq;
    return;
  }
  if (highWater > watcher.position) watcher.position = highWater;
  const live = await hub.cursorOf(watcher.namespace);
  // Rejoin only when the live feed has not gone past us; otherwise read again (it converges).
  if (live !== null && live <= watcher.position) watcher.lagging = false;
  // The live feed is not running (the database was unreachable): try again shortly, not in a loop.
  else if (live === null) await new Promise((resolve) => setTimeout(resolve, 500));
}

/** Yields the watcher's items until `signal` aborts; unsubscribes at the end. */
export async function* followEvents(
  db: Db,
  hub: EventHub,
  watcher: Watcher,
  options: { keepaliveMs: number; signal: AbortSignal },
): AsyncGenerator<StatusItem> {
  try {
    while (!options.signal.aborted && !watcher.closed) {
      const next = watcher.queue.shift();
      if (next !== undefined) {
        yield { kind: "event", event: next, cursor: next.seq };
        continue;
      }
      if (watcher.lagging) {
        await catchUp(db, hub, watcher);
        continue;
      }
      const worked = await watcher.waitForWork(options.keepaliveMs, options.signal);
      if (!worked) yield { kind: "keepalive", cursor: watcher.position };
    }
  } finally {
    hub.unsubscribe(watcher);
  }
}

/** Builds a filter; used by the handlers after validation. */
export function eventFilter(taskIds: readonly string[], jobTypes: readonly string[], states: EventFilter["states"]): EventFilter {
  return { taskIds, jobTypes, states };
}
