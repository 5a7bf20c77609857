/**
 * Submit with idempotency keys: one transaction that releases expired key holders, inserts what is
 * free, and reads the holders of the rest, which the caller gets back marked deduplicated. Submits
 * without a key never come here (they stay one INSERT, src/store/sql/task-insert-batch.ts).
 *
 * Within one batch, a key (of one job type) that appears again is not inserted twice: every later
 * occurrence gets the task of the first, deduplicated. A duplicate whose input or settings differ
 * from the holder's still gets the holder, as is: the key alone decides.
 */
import { TaskwireError } from "../core/errors.js";
import type { NewTask, TaskRecord } from "../core/task.js";
import type pg from "pg";
import type { Db } from "../store/db.js";
import { withTransaction } from "../store/orm.js";
import { taskInsertKeyed } from "../store/sql/task-insert-keyed.js";
import { taskKeyHolders } from "../store/sql/task-key-holders.js";
import { taskKeyRelease, type TaskKey } from "../store/sql/task-key-release.js";

/** Rounds within one transaction: a holder can vanish between the INSERT and the read only if it was released by another Submit meanwhile. */
const MAX_ROUNDS = 5;
/** Whole-transaction retries after a deadlock (two batches taking the same keys in different orders). */
const MAX_RETRIES = 5;
const RETRYABLE = new Set(["40P01", "40001"]);

function slot(t: { namespace: string; jobType: string }, key: string): string {
  return `${t.namespace}\u0000${t.jobType}\u0000${key}`;
}

/**
 * Checks the existing tasks a submit is about to answer with (deduplicated), before its transaction
 * commits: throwing rolls the whole submit back (e.g. a JSON caller that could not be shown them).
 */
export type DuplicateCheck = (duplicates: readonly TaskRecord[]) => Promise<void>;

/** Submits tasks some of which carry keys; returns one record per input, in order. */
export async function submitKeyed(pool: pg.Pool, tasks: readonly NewTask[], checkDuplicates?: DuplicateCheck): Promise<TaskRecord[]> {
  for (let retry = 1; ; retry++) {
    try {
      return await withTransaction(pool, async (db) => {
        const records = await submitKeyedOnce(db, tasks);
        const duplicates = records.filter((r) => r.deduplicated === true);
        if (checkDuplicates !== undefined && duplicates.length > 0) await checkDuplicates(duplicates);
        return records;
      });
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (retry >= MAX_RETRIES || typeof code !== "string" || !RETRYABLE.has(code)) throw error;
    }
  }
}

/**
 * Frees a task's idempotency key from its holder if that holder's dedup window has passed (the
 * task itself included), so that a Retry of the task in this transaction can take it back.
 */
export async function releaseExpiredKeyOf(db: Db, task: TaskRecord): Promise<void> {
  if (task.idempotencyKey !== null) await taskKeyRelease(db, [{ namespace: task.namespace, jobType: task.jobType, key: task.idempotencyKey }]);
}

async function submitKeyedOnce(db: Db, tasks: readonly NewTask[]): Promise<TaskRecord[]> {
  const result: (TaskRecord | undefined)[] = new Array(tasks.length);
  const firstOf = new Map<string, number>();
  const laterDuplicates: [index: number, first: number][] = [];
  let open: number[] = [];
  for (const [i, task] of tasks.entries()) {
    const key = task.idempotencyKey ?? null;
    if (key === null) {
      open.push(i);
      continue;
    }
    const s = slot(task, key);
    const first = firstOf.get(s);
    if (first === undefined) {
      firstOf.set(s, i);
      open.push(i);
    } else {
      laterDuplicates.push([i, first]);
    }
  }
  const keyOf = (i: number): TaskKey => ({ namespace: tasks[i]!.namespace, jobType: tasks[i]!.jobType, key: tasks[i]!.idempotencyKey! });

  for (let round = 0; round < MAX_ROUNDS && open.length > 0; round++) {
    const keyed = open.filter((i) => (tasks[i]!.idempotencyKey ?? null) !== null);
    if (keyed.length > 0) await taskKeyRelease(db, keyed.map(keyOf));
    const inserted = await taskInsertKeyed(db, open.map((i) => tasks[i]!));
    // Inserted rows come back in id order, which is input order: keyed ones are matched by key,
    // the others (never skipped) fill the unkeyed positions in order.
    const unkeyedPositions = open.filter((i) => (tasks[i]!.idempotencyKey ?? null) === null);
    let next = 0;
    for (const record of inserted) {
      if (record.idempotencyKey === null) result[unkeyedPositions[next++]!] = record;
      else result[firstOf.get(slot(record, record.idempotencyKey))!] = record;
    }
    const missing = keyed.filter((i) => result[i] === undefined);
    if (missing.length > 0) {
      for (const holder of await taskKeyHolders(db, missing.map(keyOf))) {
        result[firstOf.get(slot(holder, holder.idempotencyKey!))!] = { ...holder, deduplicated: true };
      }
    }
    open = open.filter((i) => result[i] === undefined);
  }
  if (open.length > 0) {
    throw new TaskwireError("CONTENDED", `concurrent submits kept taking ${open.length} of this submit's idempotency key(s) (${MAX_ROUNDS} rounds); nothing was written, retry it`);
  }
  for (const [i, first] of laterDuplicates) result[i] = { ...result[first]!, deduplicated: true };
  return result as TaskRecord[];
}
