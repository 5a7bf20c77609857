/**
 * Takes back attempts whose lease ended (no heartbeat) or whose timeout passed. Every replica runs
 * one; SKIP LOCKED and the state guard in lease-sweep-expired make concurrent sweeps safe, so no
 * leader or lock is needed.
 */
import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import type { Db } from "../store/db.js";
import { leaseSweepExpired, type SweptTask } from "../store/sql/lease-sweep-expired.js";
import { MaintenanceLoop } from "../engine/maintenance-loop.js";

/** Rows one statement sweeps; more are taken by the next statement of the same pass. */
const BATCH = 500;

/** Typed events for tests and metrics. */
export interface SweeperEvents {
  "sweeper:swept": [SweptTask[]];
}

/** The lease and timeout sweeper of one replica. */
export class LeaseSweeper extends EventEmitter<SweeperEvents> {
  private readonly loop: MaintenanceLoop;

  constructor(
    private readonly db: Db,
    private readonly logger: Logger,
    intervalMs: number,
  ) {
    super();
    this.loop = new MaintenanceLoop({ intervalMs, logger, what: "lease sweep", batch: () => this.sweepBatch() });
  }

  /** One pass: sweeps batches until fewer than a full batch expire. */
  sweep(): Promise<void> {
    return this.loop.run();
  }

  /** Stops sweeping (waits for a pass in progress). */
  stop(): Promise<void> {
    return this.loop.stop();
  }

  private async sweepBatch(): Promise<boolean> {
    const swept = await leaseSweepExpired(this.db, BATCH);
    if (swept.length > 0) {
      this.logger.info({ count: swept.length, timedOut: swept.filter((s) => s.timed_out).length }, "took back expired attempts");
      this.emit("sweeper:swept", swept);
    }
    return swept.length >= BATCH;
  }
}
