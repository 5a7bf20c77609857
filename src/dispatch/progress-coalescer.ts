/**
 * Progress arrives as often as handlers report it; the database sees at most one write per task
 * per interval, always with the latest value (one batched statement per flush).
 */
import type { Logger } from "pino";
import type { ProgressReport } from "../core/task.js";
import type { Db } from "../store/db.js";
import { taskProgressBatch } from "../store/sql/task-progress-batch.js";

/** Coalesces progress reports and flushes them on a timer. */
export class ProgressCoalescer {
  private latest = new Map<string, ProgressReport>();
  /** The (namespace, task) pairs of `latest`, for flushBefore. */
  private tasks = new Set<string>();
  /** The (namespace, task) pairs of batches flushed but not yet written, with how many batches hold each. */
  private readonly writing = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly db: Db,
    private readonly logger: Logger,
    intervalMs: number,
  ) {
    this.timer = setInterval(() => void this.flush(), intervalMs);
    this.timer.unref();
  }

  /**
   * Keeps the report, replacing any earlier one of the same lease not yet written. Keyed by the
   * whole lease, so a report naming a task of another namespace, or with a wrong token, never
   * replaces the holder's (it is then rejected by the statement's guard).
   */
  report(report: ProgressReport): void {
    this.latest.set(progressKey(report.namespace, report.taskId, report.leaseToken), report);
    this.tasks.add(taskKey(report.namespace, report.taskId));
  }

  /**
   * Before an attempt's outcome is written: writes its pending progress first (with everything
   * else pending, in the same statement), since progress is only accepted while the task runs.
   */
  async flushBefore(namespace: string, taskIds: readonly string[]): Promise<void> {
    const concerned = (tasks: ReadonlySet<string> | ReadonlyMap<string, number>) => tasks.size > 0 && taskIds.some((id) => tasks.has(taskKey(namespace, id)));
    if (concerned(this.tasks)) await this.flush();
    // Also a batch already on its way: committing after the caller's write, its older value
    // would replace a unary report's newer one.
    else if (concerned(this.writing)) await this.flushing;
  }

  /** Writes what is pending (also called on stop, so the last value is not lost). */
  flush(): Promise<void> {
    if (this.latest.size === 0) return this.flushing;
    const batch = [...this.latest.values()];
    const tasks = this.tasks;
    this.latest = new Map();
    this.tasks = new Set();
    for (const key of tasks) this.writing.set(key, (this.writing.get(key) ?? 0) + 1);
    const write = this.flushing.then(async () => {
      try {
        await taskProgressBatch(this.db, batch);
      } catch (error) {
        this.logger.warn({ err: error, count: batch.length }, "could not record progress");
      } finally {
        for (const key of tasks) {
          const left = this.writing.get(key)! - 1;
          if (left === 0) this.writing.delete(key);
          else this.writing.set(key, left);
        }
      }
    });
    this.flushing = write;
    return write;
  }

  /** Stops the timer after a last flush. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}

function taskKey(namespace: string, taskId: string): string {
  return `${namespace}\u0000${taskId}`;
}

function progressKey(namespace: string, taskId: string, leaseToken: string): string {
  return `${namespace}\u0000${taskId}\u0000${leaseToken}`;
}
