/** Waiting for a task to finish: one watcher on that task, bounded by the caller's timeout. */
import type pg from "pg";
import type { TaskRecord } from "../core/task.js";
import { FINISHED_STATES, isFinished } from "../core/task-state.js";
import type { Db } from "../store/db.js";
import { withTransaction } from "../store/orm.js";
import { namespaceEventSeq } from "../store/sql/task-event-read.js";
import { taskGet } from "../store/sql/task-get.js";
import type { EventHub } from "./event-hub.js";
import { followEvents } from "./status-stream.js";

/**
 * Resolves with the task once it is finished, or as it is when `timeoutMs` passes or `signal`
 * aborts (timedOut: it is unfinished; cutShort as well when `signal` aborted first, so that the
 * caller can tell a server shutdown from a timeout). Undefined when the task does not exist.
 */
export async function waitForTask(
  deps: { db: Db; pool: pg.Pool; hub: EventHub },
  params: { namespace: string; id: string; timeoutMs: number; signal: AbortSignal },
): Promise<{ task: TaskRecord; timedOut: boolean; cutShort: boolean } | undefined> {
  // The task and the sequence it is current at, from one snapshot: no event can fall between.
  const start = await withTransaction(
    deps.pool,
    async (tx) => ({ seq: await namespaceEventSeq(tx, params.namespace), task: await taskGet(tx, params.namespace, params.id) }),
    { repeatableRead: true },
  );
  if (start.task === undefined) return undefined;
  if (isFinished(start.task.state)) return { task: start.task, timedOut: false, cutShort: false };

  const stop = new AbortController();
  let timerFired = false;
  const timer = setTimeout(() => {
    timerFired = true;
    stop.abort();
  }, params.timeoutMs);
  const onAbort = () => stop.abort();
  params.signal.addEventListener("abort", onAbort, { once: true });
  const watcher = deps.hub.subscribe(params.namespace, { taskIds: [params.id], jobTypes: [], states: FINISHED_STATES }, start.seq);
  try {
    for await (const item of followEvents(deps.db, deps.hub, watcher, { keepaliveMs: params.timeoutMs + 1_000, signal: stop.signal })) {
      if (item.kind === "event") break;
    }
  } finally {
    clearTimeout(timer);
    params.signal.removeEventListener("abort", onAbort);
    deps.hub.unsubscribe(watcher);
  }
  const cutShort = params.signal.aborted && !timerFired;
  const task = await taskGet(deps.db, params.namespace, params.id);
  if (task === undefined) return undefined;
  const finished = isFinished(task.state);
  return { task, timedOut: !finished, cutShort: cutShort && !finished };
}
