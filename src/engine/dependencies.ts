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
import {
  compareIds,
  dependencyFailedReason,
  existingParents,
  expiringDependencyMessage,
  graphEdges,
  planGraph,
  planKeyedGraph,
  planRetry,
  RETENTION_MARGIN_MS,
  type KeyedGraphPlan,
} from "../core/dependencies.js";
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
import { taskKeyHolders } from "../store/sql/task-key-holders.js";
import { taskKeyRelease, type TaskKey } from "../store/sql/task-key-release.js";
import { releaseExpiredKeyOf, type DuplicateCheck } from "./keyed-submit.js";

/**
 * Attempts that skip dependencies another transaction holds (a report being written, another
 * retry) instead of waiting for them: waiting while holding other dependencies' locks could close
 * a cycle with a statement that writes several tasks. The last attempt waits. A submit with
 * idempotency keys still waits while holding them, for an expired holder's key release or for an
 * uncommitted insert of the same key: two such submits taking keys in opposite orders can
 * deadlock, which PostgreSQL breaks and withLockRetries runs again (then UNAVAILABLE).
 */
const SKIP_LOCKED_ATTEMPTS = 8;

/** Another transaction holds a dependency: roll back and try again. */
const BUSY = Symbol("busy");

/**
 * Runs `work` in a transaction holding share locks on the existing tasks among `ids` (of the
 * namespace), with their current states; ids absent from the map do not exist there. The tasks
 * among `flag` are first marked as having dependents, committed before the locks are taken, so
 * whatever finishes one of them later looks for its dependents.
 */
async function withLockedDependencies<T>(
  pool: pg.Pool,
  db: Db,
  namespace: string,
  ids: readonly string[],
  flag: readonly string[],
  work: (db: Db, states: ReadonlyMap<string, TaskState>, locked: ReadonlyMap<string, LockedDependency>) => Promise<T>,
): Promise<T> {
  const flagged = new Set(flag);
  for (let attempt = 1; ; attempt++) {
    const skipLocked = attempt < SKIP_LOCKED_ATTEMPTS;
    if (flag.length > 0) await withLockRetries(() => taskDependencyFlag(db, namespace, flag, skipLocked));
    const result = await withLockRetries(() =>
      withTransaction(pool, async (tx) => {
        const locked = ids.length === 0 ? [] : await taskDependencyLock(tx, namespace, ids, skipLocked, RETENTION_MARGIN_MS);
        if (skipLocked && locked.length < ids.length && (await taskExists(tx, namespace, ids)).size > locked.length) return BUSY;
        // Left unflagged by the skip-locked flag above: flag it next time.
        if (locked.some((row) => flagged.has(row.id) && !row.has_dependents)) return BUSY;
        return work(tx, new Map(locked.map((row) => [row.id, row.state])), new Map(locked.map((row) => [row.id, row])));
      }),
    );
    if (result !== BUSY) return result as T;
    // Reports hold their rows for a statement: a few milliseconds.
    await sleep(Math.min(2 ** attempt, 50));
  }
}

/**
 * The holders of a submit's keys were not all locked (or, depended on, flagged) when its
 * transaction read them: it rolls back and starts over, locking them with its other dependencies.
 * Also thrown when a key was taken between that read and the insert (the index skipped the row).
 */
class KeyHoldersMoved extends Error {
  constructor(
    readonly lock: readonly string[],
    readonly flag: readonly string[],
  ) {
    super("the holders of the submit's idempotency keys changed");
  }
}

/** Rounds of KeyHoldersMoved before giving up (each one means another submit of the same keys committed meanwhile). */
const MAX_KEY_ROUNDS = 10;

/**
 * Inserts the tasks of one submit (one namespace), some with dependencies, in one transaction: all
 * or none. Each starts WAITING until its dependencies succeed, PENDING if they already all have,
 * and ends DEAD at once (named) if one already ended DEAD or CANCELLED, with the tasks of the
 * submit that wait on it. `field(i)` names task i in errors (e.g. "tasks[3]").
 *
 * Idempotency keys work as in keyed-submit.ts, in the same transaction: expired holders are
 * released, a task whose key is held is not inserted and answers with the holder (deduplicated,
 * after `checkDuplicates` accepted it), and the unique index settles races (a row it skips starts
 * the transaction over). The holders are locked like the dependencies (in one id-ordered lock), so
 * a task of the submit that depends on a deduplicated one (depends_on_index) depends on its holder
 * in whatever state that holder is, with no finish of it missed.
 */
export async function submitWithDependencies(
  pool: pg.Pool,
  db: Db,
  tasks: readonly NewTask[],
  field: (i: number) => string,
  checkDuplicates?: DuplicateCheck,
): Promise<TaskRecord[]> {
  const namespace = tasks[0]!.namespace;
  const parents = existingParents(tasks);
  let held: readonly string[] = [];
  let flag: readonly string[] = parents;
  for (let round = 1; ; round++) {
    try {
      return await withLockedDependencies(pool, db, namespace, union(parents, held), flag, (tx, states, locked) =>
        insertGraph(tx, tasks, field, states, locked, checkDuplicates),
      );
    } catch (error) {
      if (!(error instanceof KeyHoldersMoved)) throw error;
      if (round >= MAX_KEY_ROUNDS) throw new TaskwireError("CONTENDED", `concurrent submits kept taking this submit's idempotency keys (${MAX_KEY_ROUNDS} rounds); nothing was written, retry it`, { cause: error });
      held = union(held, error.lock);
      flag = union(flag, error.flag);
    }
  }
}

/** The ids of both lists, each once, in id order. */
function union(a: readonly string[], b: readonly string[]): string[] {
  return [...new Set([...a, ...b])].sort(compareIds);
}

/** One attempt of submitWithDependencies, in its transaction, with the dependencies (and known key holders) locked. */
async function insertGraph(
  tx: Db,
  tasks: readonly NewTask[],
  field: (i: number) => string,
  states: ReadonlyMap<string, TaskState>,
  locked: ReadonlyMap<string, LockedDependency>,
  checkDuplicates: DuplicateCheck | undefined,
): Promise<TaskRecord[]> {
  const namespace = tasks[0]!.namespace;
  const keys = keysOf(tasks);
  const holders = new Map<string, TaskRecord>();
  if (keys.length > 0) {
    await taskKeyRelease(tx, keys);
    for (const holder of await taskKeyHolders(tx, keys)) holders.set(keySlot(holder.jobType, holder.idempotencyKey!), holder);
  }
  const plan = planKeyedGraph(tasks, (i) => {
    const key = tasks[i]!.idempotencyKey;
    return key == null ? undefined : holders.get(keySlot(tasks[i]!.jobType, key))?.id;
  });
  const unlocked = [...holders.values()].filter((h) => !locked.has(h.id));
  const unflagged = plan.heldParents.filter((id) => locked.get(id)?.has_dependents !== true);
  if (unlocked.length > 0 || unflagged.length > 0) throw new KeyHoldersMoved([...holders.values()].map((h) => h.id), plan.heldParents);
  checkParents(plan, tasks, field, states, locked);

  const starts = planGraph(plan.inserts, states);
  const inserted = plan.inserts.length === 0 ? [] : await taskInsertGraph(tx, plan.inserts, starts);
  // The index skipped a row: its key was taken after the holders were read. Start over.
  if (inserted.length < plan.inserts.length) throw new KeyHoldersMoved([], []);
  const ids = inserted.map((t) => t.id);
  await taskDependencyInsert(tx, graphEdges(plan.inserts, ids));
  await taskDependencyFail(
    tx,
    starts.flatMap((s, i) => (s.failedParent === null ? [] : [{ id: ids[i]!, reason: dependencyFailedReason(s.failedParent.id, s.failedParent.state) }])),
  );
  // As committed: with their dependencies, and the state the failures above may have changed.
  const byId = new Map((await taskGetMany(tx, namespace, ids)).map((t) => [t.id, t]));
  const result = plan.targets.map((target, i): TaskRecord => {
    if (target.kind === "existing") return { ...holders.get(keySlot(tasks[i]!.jobType, tasks[i]!.idempotencyKey!))!, deduplicated: true };
    const record = byId.get(ids[target.index]!)!;
    // A key repeated in the submit: the later occurrences get the first one's task.
    return plan.positions[target.index] === i ? record : { ...record, deduplicated: true };
  });
  const duplicates = result.filter((r) => r.deduplicated === true);
  if (checkDuplicates !== undefined && duplicates.length > 0) await checkDuplicates(duplicates);
  return result;
}

/** The keys of a submit, each once. */
function keysOf(tasks: readonly NewTask[]): TaskKey[] {
  const keys = new Map<string, TaskKey>();
  for (const t of tasks) if (t.idempotencyKey != null) keys.set(keySlot(t.jobType, t.idempotencyKey), { namespace: t.namespace, jobType: t.jobType, key: t.idempotencyKey });
  return [...keys.values()];
}

function keySlot(jobType: string, key: string): string {
  return `${jobType}\u0000${key}`;
}

/**
 * The existing dependencies of the tasks to insert must exist and not be about to go by
 * retention; the lowest offending id is named, with the first task naming it. Tasks answered by a
 * key's holder are not checked: their own dependencies do not matter (the key alone decides).
 */
function checkParents(
  plan: KeyedGraphPlan<NewTask>,
  tasks: readonly NewTask[],
  field: (i: number) => string,
  states: ReadonlyMap<string, TaskState>,
  locked: ReadonlyMap<string, LockedDependency>,
): void {
  const named = existingParents(plan.inserts);
  const firstNaming = (id: string) => {
    const n = plan.inserts.findIndex((t) => t.dependsOn?.includes(id));
    const position = plan.positions[n]!;
    // A holder is named through depends_on_index (the task holding a key of the submit).
    return (tasks[position]!.dependsOn ?? []).includes(id) ? `${field(position)}.depends_on` : `${field(position)}.depends_on_index`;
  };
  const missing = named.find((id) => !states.has(id));
  if (missing !== undefined) {
    throw invalidArgument(firstNaming(missing), `task ${JSON.stringify(missing)} does not exist in this namespace; name tasks that Submit returned`);
  }
  // Under the lock, by the database's clock: the pruner cannot be deleting it as this commits.
  const expiring = named.find((id) => locked.get(id)!.expiring);
  if (expiring !== undefined && plan.heldParents.includes(expiring) && !tasks.some((t) => t.dependsOn?.includes(expiring))) {
    // The client named no such task: a key of its submit is held by a finished task about to be
    // deleted. Once it is gone (or its dedup window ends first), the same submit makes new tasks.
    throw new TaskwireError(
      "CONTENDED",
      `${firstNaming(expiring)}: the task holding this submit's idempotency key, ${JSON.stringify(expiring)}, is about to be deleted by retention (after ${new Date(locked.get(expiring)!.deleted_after!).toISOString()}) and cannot be depended on; nothing was written, retry after that`,
    );
  }
  if (expiring !== undefined) {
    throw invalidArgument(firstNaming(expiring), expiringDependencyMessage(expiring, new Date(locked.get(expiring)!.deleted_after!)));
  }
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
  return withLockedDependencies(pool, db, task.namespace, task.dependsOn, [], async (tx, states, locked) => {
    const expiring = new Set([...locked.values()].filter((row) => row.expiring).map((row) => row.id));
    const plan = planRetry(task.id, task.dependsOn, states, expiring);
    if (!plan.ok) throw new TaskwireError("ILLEGAL_TRANSITION", plan.reason);
    await setActor(tx, actor);
    await releaseExpiredKeyOf(tx, task);
    return taskRetry(tx, { namespace: task.namespace, id: task.id, additionalAttempts, unmetDependencies: plan.unmet });
  });
}
