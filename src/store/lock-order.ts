/**
 * The one order in which statements that write several running tasks lock them: ascending id.
 * Reports (in arrival order), progress and heartbeats (in assignment order) of one worker's tasks
 * run at the same time; each locks its rows in the order of its input (a nested loop over unnest,
 * each row a primary-key lookup). In different orders two of them could each hold a row the other
 * waits for, a deadlock PostgreSQL breaks only after deadlock_timeout by aborting one.
 */
import { compareIds } from "../core/dependencies.js";

/** The items sorted by task id (the same array when it already is). */
export function inLockOrder<T extends { taskId: string }>(items: readonly T[]): readonly T[] {
  for (let i = 1; i < items.length; i++) {
    if (compareIds(items[i - 1]!.taskId, items[i]!.taskId) > 0) return [...items].sort((a, b) => compareIds(a.taskId, b.taskId));
  }
  return items;
}
