/**
 * Deletes finished tasks (with their attempts and events) once their job type's retention has
 * passed. Every replica runs one; each statement deletes a bounded batch with SKIP LOCKED, and the
 * pruner pauses between batches, so it never holds many locks or the claim path for long.
 */
import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import type { Db } from "../store/db.js";
import { taskPruneFinished } from "../store/sql/task-prune-finished.js";

/** Tasks one statement deletes. */
const BATCH = 1_000;
/** Pause between the batches of one pass (ms), leaving the database to other work. */
const PAUSE_MS = 50;

/** Typed events for tests and metrics. */
export interface PrunerEvents {
  "pruner:deleted": [number];
}

export class RetentionPruner extends EventEmitter<PrunerEvents> {
  private readonly timer: NodeJS.Timeout;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly db: Db,
    private readonly logger: Logger,
    intervalMs: number,
    private readonly batch = BATCH,
  ) {
    super();
    this.timer = setInterval(() => void this.prune(), intervalMs);
    this.timer.unref();
  }

  /** One pass: deletes batches until fewer than a full batch have expired. */
  prune(): Promise<void> {
    // .finally clears the flag after it was set, even when the pass has nothing to do.
    this.running ??= this.pass().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async pass(): Promise<void> {
    try {
      while (!this.stopped) {
        const deleted = await taskPruneFinished(this.db, this.batch);
        if (deleted > 0) {
          this.logger.info({ count: deleted }, "deleted finished tasks past their retention");
          this.emit("pruner:deleted", deleted);
        }
        if (deleted < this.batch) break;
        await new Promise((resolve) => setTimeout(resolve, PAUSE_MS));
      }
    } catch (error) {
      this.logger.warn({ err: error }, "retention pass failed; retrying at the next interval");
    }
  }

  /** Stops pruning (waits for a batch in progress). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running;
  }
}
