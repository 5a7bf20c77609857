/** Task operations behind the RPCs: submit, read, list, cancel, and the unary worker calls. */
import type { Logger } from "pino";
import { TaskwireError } from "../core/errors.js";
import { decodePageKey, encodePageToken, filterFingerprint } from "../core/page-token.js";
import type { Assignment, LeaseRef, NewTask, ProgressReport, TaskDetail, TaskRecord } from "../core/task.js";
import { illegalTransitionMessage, statesAllowing } from "../core/task-state.js";
import type { Db } from "../store/db.js";
import { withTransaction } from "../store/orm.js";
import type pg from "pg";
import { taskCancel } from "../store/sql/task-cancel.js";
import { taskAttempts, taskGet } from "../store/sql/task-get.js";
import { taskInsertBatch } from "../store/sql/task-insert-batch.js";
import { releaseExpiredKeyOf, submitKeyed, type DuplicateCheck } from "./keyed-submit.js";
import { retryWithDependencies, submitWithDependencies } from "./dependencies.js";
import { hasAnyDependencies } from "../core/dependencies.js";
import { withLockRetries } from "../store/lock-retry.js";
import { setActor } from "../store/sql/set-actor.js";
import { taskLeaseState } from "../store/sql/task-lease-state.js";
import { taskCount, taskListPage, type TaskFilter } from "../store/sql/task-list.js";
import { taskQueuePosition } from "../store/sql/task-queue-position.js";
import { isKeyConflict, taskRetry } from "../store/sql/task-retry.js";
import { taskKeyHolders } from "../store/sql/task-key-holders.js";
import { taskCheckpointSave } from "../store/sql/task-checkpoint-save.js";
import { taskProgressSet } from "../store/sql/task-progress-set.js";
import { taskLeaseExtend } from "../store/sql/task-lease-extend.js";
import { workerList, type WorkerRecord } from "../store/sql/worker-list.js";
import { isTaskId } from "../core/task-id.js";
import { REVOKE_CHANNEL, type RevokeNotice } from "../dispatch/ready-listener.js";
import type { ReportAnswer, ReportBatcher } from "../dispatch/report-batcher.js";
import type { Dispatcher } from "../dispatch/dispatcher.js";

/** Task operations for one replica. */
export class Tasks {
  constructor(
    private readonly db: Db,
    private readonly pool: pg.Pool,
    private readonly batcher: ReportBatcher,
    private readonly dispatcher: Dispatcher,
    private readonly logger: Logger,
  ) {}

  /**
   * Inserts validated tasks in one statement (all or none); returns them in order, as committed.
   * Tasks an idle worker session of this replica can run at once are handed to it directly
   * (Dispatcher.planDirect): they come back RUNNING. With an idempotency key anywhere: one
   * transaction that deduplicates (keyed-submit.ts), without direct hand-off (a duplicate must
   * never reach a worker); a duplicate comes back as the existing task, `deduplicated`, after
   * `checkDuplicates` accepted it (throwing rolls the submit back). With
   * dependencies anywhere: one transaction that locks them (dependencies.ts), also without direct
   * hand-off, deduplicating keys there too; `field(i)` names task i in errors about them.
   */
  async submit(tasks: readonly NewTask[], field: (i: number) => string = (i) => `tasks[${i}]`, checkDuplicates?: DuplicateCheck): Promise<TaskRecord[]> {
    if (hasAnyDependencies(tasks)) return submitWithDependencies(this.pool, this.db, tasks, field, checkDuplicates);
    if (tasks.some((task) => task.idempotencyKey != null)) return submitKeyed(this.pool, tasks, checkDuplicates);
    const plan = this.dispatcher.planDirect(tasks);
    if (plan === undefined) return (await taskInsertBatch(this.db, tasks)).tasks;
    let inserted;
    try {
      inserted = await taskInsertBatch(this.db, tasks, plan.workerIds);
    } catch (error) {
      plan.cancel();
      throw error;
    }
    const assigned = new Map<number, Assignment>();
    inserted.tasks.forEach((task, i) => {
      const leaseToken = inserted.leaseTokens[i];
      if (task.state === "running" && leaseToken !== null && leaseToken !== undefined) assigned.set(i, assignmentOf(task, leaseToken));
    });
    plan.deliver(assigned);
    return inserted.tasks;
  }

  /** A task with its attempts and, when pending, its queue position; NOT_FOUND otherwise. */
  async get(namespace: string, id: string): Promise<TaskDetail> {
    const task = await taskGet(this.db, namespace, id);
    if (task === undefined) throw taskNotFound(id);
    const [attempts, queuePosition] = await Promise.all([
      taskAttempts(this.db, id),
      task.state === "pending" ? taskQueuePosition(this.db, { namespace, jobType: task.jobType, id }) : undefined,
    ]);
    return { ...task, attempts, queuePosition: queuePosition ?? null };
  }

  /** One page of tasks newest first, the token of the next page, and the exact total. */
  async list(filter: TaskFilter, pageSize: number, pageToken: string): Promise<{ tasks: TaskRecord[]; nextPageToken: string; total: number }> {
    const fingerprint = filterFingerprint(filter);
    const afterId = pageToken === "" ? null : decodePageKey(pageToken, fingerprint, isTaskId);
    const [page, total] = await Promise.all([
      taskListPage(this.db, filter, { afterId, limit: pageSize + 1 }),
      taskCount(this.db, filter),
    ]);
    const tasks = page.slice(0, pageSize);
    const last = tasks.at(-1);
    const nextPageToken = page.length > pageSize && last !== undefined ? encodePageToken(last.id, fingerprint) : "";
    return { tasks, nextPageToken, total };
  }

  /**
   * Cancels a waiting, pending or running task. A running task's holder is told through NOTIFY
   * (sent at commit, to whichever replica holds its stream); its lease is gone at once.
   */
  async cancel(namespace: string, id: string, reason: string, actor: string): Promise<TaskRecord> {
    const message = reason === "" ? "cancelled by a client" : reason;
    // Tasks waiting on it end DEAD in the same transaction (the settle trigger), which may then
    // meet another settlement in a lock cycle: PostgreSQL aborts one, and it is run again.
    const result = await withLockRetries(() =>
      withTransaction(this.pool, async (db) => {
        await setActor(db, actor);
        const cancelled = await taskCancel(db, { namespace, id, reason: message });
        if (cancelled?.previousState === "running") {
          const notice: RevokeNotice = { ns: namespace, id, attempt: cancelled.task.attempt, reason: "cancelled", message };
          await db.query("SELECT pg_notify($1, $2)", [REVOKE_CHANNEL, JSON.stringify(notice)]);
        }
        return cancelled;
      }),
    );
    if (result !== undefined) return result.task;
    const current = await taskGet(this.db, namespace, id);
    if (current === undefined) throw taskNotFound(id);
    throw new TaskwireError("ILLEGAL_TRANSITION", `task ${id}: ${illegalTransitionMessage(current.state, "cancel")}`);
  }

  /**
   * Re-queues a DEAD or CANCELLED task with `additionalAttempts` more attempts; its event records
   * `actor`. One with dependencies waits for those not yet SUCCEEDED, and is refused while one is
   * DEAD or CANCELLED (dependencies.ts). Its own dependents that ended DEAD stay DEAD: each is
   * retried by itself. A task with an idempotency key takes the key back, as every unfinished
   * task holds its key: refused (ILLEGAL_TRANSITION, naming the holder) while another task holds
   * it, i.e. one submitted with the key after this one finished that is unfinished or still in
   * its dedup window. The unique index decides, so a concurrent Submit of the key and this Retry
   * never leave two unfinished tasks with one key.
   */
  async retry(namespace: string, id: string, additionalAttempts: number, actor: string): Promise<TaskRecord> {
    for (let round = 1; ; round++) {
      const before = await taskGet(this.db, namespace, id);
      if (before === undefined) throw taskNotFound(id);
      let task: TaskRecord | undefined;
      try {
        task =
          before.dependsOn.length === 0 || !statesAllowing("retry").includes(before.state)
            ? await withTransaction(this.pool, async (db) => {
                await setActor(db, actor);
                await releaseExpiredKeyOf(db, before);
                return taskRetry(db, { namespace, id, additionalAttempts });
              })
            : await retryWithDependencies(this.pool, this.db, before, additionalAttempts, actor);
      } catch (error) {
        if (!isKeyConflict(error) || before.idempotencyKey === null) throw error;
        const [holder] = await taskKeyHolders(this.db, [{ namespace, jobType: before.jobType, key: before.idempotencyKey }]);
        // No holder any more: it was released since (its window passed meanwhile); try again.
        if (holder === undefined && round < MAX_KEY_ROUNDS) continue;
        throw keyHeld(before, holder, error);
      }
      if (task !== undefined) return task;
      const current = await taskGet(this.db, namespace, id);
      if (current === undefined) throw taskNotFound(id);
      throw new TaskwireError("ILLEGAL_TRANSITION", `task ${id}: ${illegalTransitionMessage(current.state, "retry")}`);
    }
  }

  /** Unary heartbeat: extends the leases still held and returns them. */
  heartbeat(namespace: string, workerId: string, leases: readonly LeaseRef[]) {
    return taskLeaseExtend(this.db, { namespace, workerId, leases });
  }

  /** Writes one attempt's progress now (unary ReportProgress); throws STALE_LEASE / NOT_FOUND when the lease is not current. */
  async progress(report: ProgressReport): Promise<void> {
    if (!(await taskProgressSet(this.db, report))) throw await this.explainRejection(report);
  }

  /** Saves a checkpoint; throws STALE_LEASE / NOT_FOUND when the lease is not current. */
  async checkpoint(lease: LeaseRef, checkpoint: Uint8Array): Promise<void> {
    if (!(await taskCheckpointSave(this.db, lease, checkpoint))) throw await this.explainRejection(lease);
  }

  /** Workers of a namespace; "connected" means the stream is open and heartbeats arrive within two default leases. */
  listWorkers(params: { namespace: string; includeDisconnected: boolean; afterId: string | null; limit: number }): Promise<WorkerRecord[]> {
    return workerList(this.db, { ...params, staleAfterMs: 60_000 });
  }

  /** Unary claim for workers without streams (through the dispatcher, so that limits apply). */
  claim(params: { namespace: string; workerId: string; jobTypes: readonly string[]; limit: number }): Promise<Assignment[]> {
    return this.dispatcher.claimFor(params);
  }

  /** Why a report was not accepted: the task is unknown, finished, or held by another lease. */
  async explainRejection(report: LeaseRef): Promise<TaskwireError> {
    const current = (await taskLeaseState(this.db, report.namespace, [report.taskId])).get(report.taskId);
    if (current === undefined) return taskNotFound(report.taskId);
    const base = `report for task ${report.taskId} attempt ${report.attempt} rejected`;
    if (current.state !== "running") {
      return new TaskwireError("STALE_LEASE", `${base}: the task is ${current.state.toUpperCase()}, so no attempt may report on it`);
    }
    if (current.attempt !== report.attempt) {
      return new TaskwireError("STALE_LEASE", `${base}: attempt ${current.attempt} is the current one`);
    }
    this.logger.debug({ taskId: report.taskId }, "report with a wrong lease token");
    return new TaskwireError("STALE_LEASE", `${base}: the lease token is not the one issued for this attempt`);
  }
}

/** Retries of a Retry whose key conflict vanished before it could be explained (its holder was released meanwhile). */
const MAX_KEY_ROUNDS = 3;

/** Why a task cannot run again: another task holds its idempotency key. */
function keyHeld(task: TaskRecord, holder: TaskRecord | undefined, cause: unknown): TaskwireError {
  const who = holder === undefined ? "another task" : `task ${holder.id} (${holder.state.toUpperCase()})`;
  return new TaskwireError(
    "ILLEGAL_TRANSITION",
    `task ${task.id}: cannot retry: its idempotency key ${JSON.stringify(task.idempotencyKey)} is held by ${who}, submitted with the key after this task finished; ` +
      "two tasks never hold one key, so retry this one only once that task has finished (and its job type's dedup window has passed)",
    { cause },
  );
}

/** The assignment of a task inserted RUNNING (a direct hand-off). */
function assignmentOf(task: TaskRecord, leaseToken: string): Assignment {
  return {
    taskId: task.id,
    namespace: task.namespace,
    jobType: task.jobType,
    input: task.input,
    attempt: task.attempt,
    maxAttempts: task.maxAttempts,
    leaseToken,
    timeoutMs: task.timeoutMs,
    createdAt: task.createdAt,
    leaseExpiresAt: task.leaseExpiresAt ?? task.createdAt,
    checkpoint: null,
    // Tasks with dependencies are never handed off directly.
    hasDependencies: false,
    parents: [],
  };
}

/** NOT_FOUND for a task id (also for another namespace's task, which must look the same). */
export function taskNotFound(id: string): TaskwireError {
  return new TaskwireError("NOT_FOUND", `task ${JSON.stringify(id)} does not exist`);
}
