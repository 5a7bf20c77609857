/**
 * Task dependencies, the pure part: how the tasks of one submit start given the states of the
 * existing tasks they name, the edges they make, and what a retry of a task with dependencies does.
 * The store settles dependents when parents finish (migration 0030's trigger); this decides the
 * starting point, under the locks the submit holds on those parents.
 */
import { isFinished, type TaskAction, type TaskState } from "./task-state.js";

/**
 * How close to its deletion by retention a finished task may no longer be named as a dependency
 * (by Submit, or by the Retry of a task that depends on it). The pruner decides by the snapshot of
 * its statement, in which a dependent committed meanwhile is not visible yet, so it could delete
 * the parent a new dependent has just named. With this margin it cannot: to delete such a parent
 * it would have to start more than a minute after the dependent's transaction checked it, and that
 * transaction has long committed by then (it takes milliseconds). A retention under two minutes
 * uses half of itself as the margin, so its finished tasks can still be named for a while.
 */
export const RETENTION_MARGIN_MS = 60_000;

/** Why a task about to be deleted by retention (at `deletedAfter`) cannot be named as a dependency. */
export function expiringDependencyMessage(id: string, deletedAfter: Date): string {
  return (
    `task ${JSON.stringify(id)} cannot be depended on: its job type's retention deletes it after ${deletedAfter.toISOString()}, ` +
    "less than a minute from now (or already), and its dependents would lose its output; name a task with more than a minute of retention left, or submit that work again"
  );
}

/**
 * The last_error of a claimed task whose dependency is gone (deleted by retention, which Submit's
 * margin makes all but impossible): it ends DEAD rather than run with fewer parents than it named.
 */
export function dependencyDeletedReason(parentId: string): string {
  return `dependency ${parentId} no longer exists (deleted by retention before this task ran), so its output cannot be handed to it`;
}

/** The dependency lists of one task of a submit (both may be empty). */
export interface DependencyLists {
  /** Existing tasks, by id. */
  dependsOn?: readonly string[] | undefined;
  /** Earlier tasks of the same submit, by position. */
  dependsOnIndex?: readonly number[] | undefined;
}

/** How one task of a submit starts. */
export interface GraphStart {
  state: "waiting" | "pending";
  /** Dependencies that have not SUCCEEDED (a DEAD or CANCELLED one counts until it kills the task). */
  unmet: number;
  hasDependencies: boolean;
  /** A later task of the same submit depends on it. */
  hasDependents: boolean;
  /** The lowest-id existing dependency that already ended DEAD or CANCELLED: the task ends DEAD at once, naming it. */
  failedParent: { id: string; state: TaskState } | null;
}

/** True when any task of the submit has dependencies. */
export function hasAnyDependencies(tasks: readonly DependencyLists[]): boolean {
  return tasks.some((t) => (t.dependsOn?.length ?? 0) > 0 || (t.dependsOnIndex?.length ?? 0) > 0);
}

/** The existing tasks a submit names, each once, in ascending id order (the order they are locked in). */
export function existingParents(tasks: readonly DependencyLists[]): string[] {
  const ids = new Set<string>();
  for (const t of tasks) for (const id of t.dependsOn ?? []) ids.add(id);
  return [...ids].sort(compareIds);
}

/** Orders decimal task ids numerically. */
export function compareIds(a: string, b: string): number {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

/**
 * How each task starts: WAITING while any dependency has not SUCCEEDED (tasks of the same submit
 * never have), PENDING otherwise. `states` holds the current state of every existing dependency.
 */
export function planGraph(tasks: readonly DependencyLists[], states: ReadonlyMap<string, TaskState>): GraphStart[] {
  const referenced = new Set<number>();
  for (const t of tasks) for (const i of t.dependsOnIndex ?? []) referenced.add(i);
  return tasks.map((t, i) => {
    const existing = [...(t.dependsOn ?? [])].sort(compareIds);
    let unmet = t.dependsOnIndex?.length ?? 0;
    let failedParent: GraphStart["failedParent"] = null;
    for (const id of existing) {
      const state = states.get(id);
      if (state === undefined) throw new Error(`no state for dependency ${id}`);
      if (state === "succeeded") continue;
      unmet += 1;
      if (failedParent === null && isFinished(state)) failedParent = { id, state };
    }
    return {
      state: unmet > 0 ? "waiting" : "pending",
      unmet,
      hasDependencies: existing.length + (t.dependsOnIndex?.length ?? 0) > 0,
      hasDependents: referenced.has(i),
      failedParent,
    };
  });
}

/** The edges of a submit once its tasks have ids (`ids[i]` for task i): [child, parent] pairs. */
export function graphEdges(tasks: readonly DependencyLists[], ids: readonly string[]): [child: string, parent: string][] {
  const edges: [string, string][] = [];
  tasks.forEach((t, i) => {
    for (const parent of t.dependsOn ?? []) edges.push([ids[i]!, parent]);
    for (const index of t.dependsOnIndex ?? []) edges.push([ids[i]!, ids[index]!]);
  });
  return edges;
}

/** The last_error of a task that ended DEAD because a dependency ended DEAD or CANCELLED (the SQL trigger writes the same). */
export function dependencyFailedReason(parentId: string, parentState: TaskState): string {
  return `dependency ${parentId} ended ${parentState.toUpperCase()}`;
}

/** What Retry does with a task that has dependencies. */
export type RetryPlan =
  | { ok: true; action: Extract<TaskAction, "retry" | "retry_waiting">; unmet: number }
  | { ok: false; reason: string };

/**
 * Retry of a task with dependencies: back to PENDING when they all SUCCEEDED, to WAITING while some
 * are unfinished, refused while one is DEAD or CANCELLED (or was deleted by retention): that one
 * must be retried first. Also refused when retention is about to delete one (`expiring`, see
 * RETENTION_MARGIN_MS). `states` holds the current state of each dependency that still exists.
 */
export function planRetry(taskId: string, dependsOn: readonly string[], states: ReadonlyMap<string, TaskState>, expiring: ReadonlySet<string> = new Set()): RetryPlan {
  let unmet = 0;
  for (const id of [...dependsOn].sort(compareIds)) {
    const state = states.get(id);
    if (state === undefined) {
      return { ok: false, reason: `task ${taskId} depends on task ${id}, which no longer exists (deleted by retention); it cannot run again` };
    }
    if (state === "dead" || state === "cancelled") {
      return { ok: false, reason: `task ${taskId} depends on task ${id}, which is ${state.toUpperCase()}; retry that task first` };
    }
    if (expiring.has(id)) {
      return { ok: false, reason: `task ${taskId} depends on task ${id}, which retention deletes within a minute (or already may); it cannot run again` };
    }
    if (state !== "succeeded") unmet += 1;
  }
  return unmet === 0 ? { ok: true, action: "retry", unmet } : { ok: true, action: "retry_waiting", unmet };
}

/** Where one task of a keyed submit with dependencies ends up. */
export type KeyedTarget = { kind: "existing"; id: string } | { kind: "new"; index: number };

/** A submit with idempotency keys and dependencies, once the holders of its keys are known. */
export interface KeyedGraphPlan<T> {
  /** Per position: the existing task holding its key, or the task to insert (a key repeated in the submit shares its first occurrence's). */
  targets: KeyedTarget[];
  /** The positions inserted, in order (`targets[positions[n]]` is new task n). */
  positions: number[];
  /** The tasks to insert, their dependencies on positions rewritten: on an existing holder as depends_on its id, on a new task as its index among these. */
  inserts: T[];
  /** Existing holders some inserted task now depends on, each once, in ascending id order. */
  heldParents: string[];
}

/**
 * Plans a submit whose tasks have idempotency keys and dependencies. `holderOf(i)` is the id of
 * the existing task holding task i's key, if any: task i is then that task (deduplicated), and so
 * is a later task repeating the key. A task depending on a deduplicated one (depends_on_index)
 * depends on the task that holds the key. A deduplicated task's own dependencies are ignored: the
 * key alone decides. Positions are validated already (each before its dependent).
 */
export function planKeyedGraph<T extends DependencyLists & { jobType: string; idempotencyKey?: string | null | undefined }>(
  tasks: readonly T[],
  holderOf: (i: number) => string | undefined,
): KeyedGraphPlan<T> {
  const targets: KeyedTarget[] = [];
  const positions: number[] = [];
  const inserts: T[] = [];
  const firstOf = new Map<string, number>();
  const heldParents = new Set<string>();
  tasks.forEach((task, i) => {
    const key = task.idempotencyKey ?? null;
    const slot = key === null ? null : `${task.jobType}\u0000${key}`;
    const first = slot === null ? undefined : firstOf.get(slot);
    if (first !== undefined) {
      targets.push(targets[first]!);
      return;
    }
    if (slot !== null) firstOf.set(slot, i);
    const holder = holderOf(i);
    if (holder !== undefined) {
      targets.push({ kind: "existing", id: holder });
      return;
    }
    const dependsOn = new Set(task.dependsOn ?? []);
    const dependsOnIndex = new Set<number>();
    for (const p of task.dependsOnIndex ?? []) {
      const target = targets[p]!;
      if (target.kind === "new") {
        dependsOnIndex.add(target.index);
      } else {
        dependsOn.add(target.id);
        heldParents.add(target.id);
      }
    }
    targets.push({ kind: "new", index: inserts.length });
    positions.push(i);
    inserts.push({ ...task, dependsOn: [...dependsOn].sort(compareIds), dependsOnIndex: [...dependsOnIndex].sort((a, b) => a - b) });
  });
  return { targets, positions, inserts, heldParents: [...heldParents].sort(compareIds) };
}
