/**
 * Takes back attempts whose lease ended (no heartbeat) or whose timeout passed. Every replica runs
 * one; SKIP LOCKED and the state guard in lease-sweep-expired make concurrent sweeps safe, so no
 * leader or lock is needed.
 */
import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import type { Db } from "../store/db.js";
import { leaseSweepExpired, type SweptTask } from "../store/sql/lease-sweep-expired.js";

/** Rows one statement sweeps; more are taken by the next statement of the same pass. */
const BATCH = 500;

/** Typed events for tests and metrics. */
export interface SweeperEvents {
  "sweeper:swept": [SweptTask[]];
}

/** The lease and timeout sweeper of one replica. */
export class LeaseSweeper extends EventEmitter<SweeperEvents> {
  private readonly timer: NodeJS.Timeout;
  private running: Promise<void> | undefined;

  constructor(
    private readonly db: Db,
    private readonly logger: Logger,
    intervalMs: number,
  ) {
    super();
    this.timer = setInterval(() => void this.sweep(), intervalMs);
    this.timer.unref();
  }

  /** One pass: sweeps batches until fewer than a full batch expire. */
  sweep(): Promise<void> {
    this.running ??= (async () => {
      try {
        for (;;) {
          const swept = await leaseSweepExpired(this.db, BATCH);
          if (swept.length > 0) {
            this.logger.info({ count: swept.length, timedOut: swept.filter((s) => s.timed_out).length }, "took back expired attempts");
            this.emit("sweeper:swept", swept);
          }
          if (swept.length < BATCH) break;
        }
      } catch (error) {
        this.logger.warn({ err: error }, "lease sweep failed; retrying at the next interval");
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  /** Stops sweeping (waits for a pass in progress). */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}
