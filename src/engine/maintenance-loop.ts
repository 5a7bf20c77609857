/**
 * The shape every replica's maintenance shares (the lease sweeper, the retention pruner, the
 * scheduler): on an interval, one pass at a time, each pass running batches until one says there
 * is nothing more; a failed pass is logged and tried again at the next interval.
 */
import type { Logger } from "pino";

export interface MaintenanceLoopOptions {
  intervalMs: number;
  logger: Logger;
  /** Names the work in the log line of a failed pass, e.g. "lease sweep". */
  what: string;
  /** One batch; resolves to true when there may be more right away. */
  batch: () => Promise<boolean>;
  /** Pause between the batches of one pass (ms), leaving the database to other work. */
  pauseMs?: number;
}

export class MaintenanceLoop {
  private readonly timer: NodeJS.Timeout;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly options: MaintenanceLoopOptions) {
    this.timer = setInterval(() => void this.run(), options.intervalMs);
    this.timer.unref();
  }

  /** Runs a pass now, or returns the one in progress. */
  run(): Promise<void> {
    // .finally clears the flag after it was set, even when the pass has nothing to do.
    this.running ??= this.pass().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  /** Stops the interval; waits for a pass in progress (which ends after its current batch). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running;
  }

  private async pass(): Promise<void> {
    try {
      while (!this.stopped && (await this.options.batch())) {
        if (this.options.pauseMs !== undefined) await new Promise((resolve) => setTimeout(resolve, this.options.pauseMs));
      }
    } catch (error) {
      this.options.logger.warn({ err: error }, `${this.options.what} failed; retrying at the next interval`);
    }
  }
}
