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

  /** Keeps the report, replacing any earlier one of the same task not yet written. */
  report(report: ProgressReport): void {
    this.latest.set(report.taskId, report);
  }

  /**
   * Before an attempt's outcome is written: writes its pending progress first (with everything
   * else pending, in the same statement), since progress is only accepted while the task runs.
   */
  async flushBefore(taskIds: readonly string[]): Promise<void> {
    if (this.latest.size > 0 && taskIds.some((id) => this.latest.has(id))) await this.flush();
  }

  /** Writes what is pending (also called on stop, so the last value is not lost). */
  flush(): Promise<void> {
    if (this.latest.size === 0) return this.flushing;
    const batch = [...this.latest.values()];
    this.latest = new Map();
    this.flushing = this.flushing.then(() =>
      taskProgressBatch(this.db, batch).catch((error: unknown) => this.logger.warn({ err: error, count: batch.length }, "could not record progress")),
    );
    return this.flushing;
  }

  /** Stops the timer after a last flush. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
