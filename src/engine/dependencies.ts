/**
 * Submit and Retry of tasks with dependencies. Both lock the dependencies they read (FOR SHARE,
 * in id order) for their whole transaction, so a dependency finishing at the same moment is seen
 * either as finished here or, by the settle trigger of the statement that finishes it (migration
 * 0030), together with what this transaction wrote: no task is left WAITING for a dependency that
 * already finished. Tasks without dependencies never come here (task-insert-batch.ts, one INSERT).
 */
import { setTimeout as sleep } from "node:timers/promises";
import type pg from "pg";
import { invalidArgument, TaskwireError } from "../core/errors.js";
import { dependencyFailedReason, existingParents, expiringDependencyMessage, graphEdges, planGraph, planRetry, RETENTION_MARGIN_MS } from "../core/dependencies.js";
import type { NewTask, TaskRecord } from "../core/task.js";
import type { TaskState } from "../core/task-state.js";
import type { Db } from "../store/db.js";
import { withLockRetries } from "../store/lock-retry.js";
import { setActor } from "../store/sql/set-actor.js";
import { withTransaction } from "../store/orm.js";
import { taskDependencyFail } from "../store/sql/task-dependency-fail.js";
import { taskDependencyFlag } from "../store/sql/task-dependency-flag.js";
import { taskDependencyInsert } from "../store/sql/task-dependency-insert.js";
import { taskDependencyLock, type LockedDependency } from "../store/sql/task-dependency-lock.js";
import { taskExists } from "../store/sql/task-exists.js";
import { taskGetMany } from "../store/sql/task-get-many.js";
import { taskInsertGraph } from "../store/sql/task-insert-graph.js";
import { taskRetry } from "../store/sql/task-retry.js";
import { releaseExpiredKeyOf } from "./keyed-submit.js";

/**
 * Attempts that skip dependencies another transaction holds (a report being written, another
 * retry) instead of waiting for them: waiting while holding other dependencies' locks could close
 * a cycle with a statement that writes several tasks. The last attempt waits.
 */
const SKIP_LOCKED_ATTEMPTS = 8;

/** Another transaction holds a dependency: roll back and try again. */
const BUSY = Symbol("busy");

/**
 * Runs `work` in a transaction holding share locks on the existing tasks among `ids` (of the
 * namespace), with their current states; ids absent from the map do not exist there. With `flag`,
 * the tasks are first marked as having dependents, committed before the locks are taken, so
 * whatever finishes one of them later looks for its dependents.
 */
async function withLockedDependencies<T>(
  pool: pg.Pool,
  db: Db,
  namespace: string,
  ids: readonly string[],
  flag: boolean,
  work: (db: Db, states: ReadonlyMap<string, TaskState>, locked: ReadonlyMap<string, LockedDependency>) => Promise<T>,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const skipLocked = attempt < SKIP_LOCKED_ATTEMPTS;
    if (flag && ids.length > 0) await withLockRetries(() => taskDependencyFlag(db, namespace, ids, skipLocked));
    const result = await withLockRetries(() =>
      withTransaction(pool, async (tx) => {
        const locked = ids.length === 0 ? [] : await taskDependencyLock(tx, namespace, ids, skipLocked, RETENTION_MARGIN_MS);
        if (skipLocked && locked.length < ids.length && (await taskExists(tx, namespace, ids)).size > locked.length) return BUSY;
        // Left unflagged by the skip-locked flag above: flag it next time.
        if (flag && locked.some((row) => !row.has_dependents)) return BUSY;
        return work(tx, new Map(locked.map((row) => [row.id, row.state])), new Map(locked.map((row) => [row.id, row])));
      }),
    );
    if (result !== BUSY) return result as T;
    // Reports hold their rows for a statement: a few milliseconds.
    await sleep(Math.min(2 ** attempt, 50));
  }
}

/**
 * Inserts the tasks of one submit (one namespace), some with dependencies, in one transaction: all
 * or none. Each starts WAITING until its dependencies succeed, PENDING if they already all have,
 * and ends DEAD at once (named) if one already ended DEAD or CANCELLED, with the tasks of the
 * submit that wait on it. `field(i)` names task i in errors (e.g. "tasks[3]").
 */
export async function submitWithDependencies(pool: pg.Pool, db: Db, tasks: readonly NewTask[], field: (i: number) => string): Promise<TaskRecord[]> {
  const namespace = tasks[0]!.namespace;
  const parents = existingParents(tasks);
  return withLockedDependencies(pool, db, namespace, parents, true, async (tx, states, locked) => {
    const missing = parents.find((id) => !states.has(id));
    if (missing !== undefined) {
      const i = tasks.findIndex((t) => t.dependsOn?.includes(missing));
      throw invalidArgument(`${field(i)}.depends_on`, `task ${JSON.stringify(missing)} does not exist in this namespace; name tasks that Submit returned`);
    }
    // Under the lock, by the database's clock: the pruner cannot be deleting it as this commits.
    const expiring = parents.find((id) => locked.get(id)!.expiring);
    if (expiring !== undefined) {
      const i = tasks.findIndex((t) => t.dependsOn?.includes(expiring));
      throw invalidArgument(`${field(i)}.depends_on`, expiringDependencyMessage(expiring, new Date(locked.get(expiring)!.deleted_after!)));
    }
    const starts = planGraph(tasks, states);
    const inserted = await taskInsertGraph(tx, tasks, starts);
    const ids = inserted.map((t) => t.id);
    await taskDependencyInsert(tx, graphEdges(tasks, ids));
    await taskDependencyFail(
      tx,
      starts.flatMap((s, i) => (s.failedParent === null ? [] : [{ id: ids[i]!, reason: dependencyFailedReason(s.failedParent.id, s.failedParent.state) }])),
    );
    // As committed: with their dependencies, and the state the failures above may have changed.
    const byId = new Map((await taskGetMany(tx, namespace, ids)).map((t) => [t.id, t]));
    return ids.map((id) => byId.get(id)!);
  });
}

/**
 * Retry of a DEAD or CANCELLED task that has dependencies: PENDING when they all SUCCEEDED,
 * WAITING while some are unfinished, ILLEGAL_TRANSITION (naming it) while one is DEAD, CANCELLED
 * or gone. Undefined when the task is not (or no longer) DEAD or CANCELLED. The task takes its
 * idempotency key back as in Tasks.retry (a key conflict is thrown for the caller to explain).
 */
export function retryWithDependencies(
  pool: pg.Pool,
  db: Db,
  task: TaskRecord,
  additionalAttempts: number,
  actor: string,
): Promise<TaskRecord | undefined> {
  // Its dependencies were flagged when it was submitted.
  return withLockedDependencies(pool, db, task.namespace, task.dependsOn, false, async (tx, states, locked) => {
    const expiring = new Set([...locked.values()].filter((row) => row.expiring).map((row) => row.id));
    const plan = planRetry(task.id, task.dependsOn, states, expiring);
    if (!plan.ok) throw new TaskwireError("ILLEGAL_TRANSITION", plan.reason);
    await setActor(tx, actor);
    await releaseExpiredKeyOf(tx, task);
    return taskRetry(tx, { namespace: task.namespace, id: task.id, additionalAttempts, unmetDependencies: plan.unmet });
  });
}
