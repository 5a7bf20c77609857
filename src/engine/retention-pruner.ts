/**
 * Deletes finished tasks (with their attempts and events) once their job type's retention has
 * passed. Every replica runs one; each statement deletes a bounded batch with SKIP LOCKED, and the
 * pruner pauses between batches, so it never holds many locks or the claim path for long.
 */
import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import type { Db } from "../store/db.js";
import { taskPruneFinished } from "../store/sql/task-prune-finished.js";
import { MaintenanceLoop } from "./maintenance-loop.js";

/** Tasks one statement deletes. */
const BATCH = 1_000;
/** Pause between the batches of one pass (ms), leaving the database to other work. */
const PAUSE_MS = 50;

/** Typed events for tests and metrics. */
export interface PrunerEvents {
  "pruner:deleted": [number];
}

export class RetentionPruner extends EventEmitter<PrunerEvents> {
  private readonly loop: MaintenanceLoop;

  constructor(
    private readonly db: Db,
    private readonly logger: Logger,
    intervalMs: number,
    private readonly batch = BATCH,
  ) {
    super();
    this.loop = new MaintenanceLoop({ intervalMs, logger, what: "retention pass", pauseMs: PAUSE_MS, batch: () => this.deleteBatch() });
  }

  /** One pass: deletes batches until fewer than a full batch have expired. */
  prune(): Promise<void> {
    return this.loop.run();
  }

  /** Stops pruning (waits for a batch in progress). */
  stop(): Promise<void> {
    return this.loop.stop();
  }

  private async deleteBatch(): Promise<boolean> {
    const deleted = await taskPruneFinished(this.db, this.batch);
    if (deleted > 0) {
      this.logger.info({ count: deleted }, "deleted finished tasks past their retention");
      this.emit("pruner:deleted", deleted);
    }
    return deleted >= this.batch;
  }
}
