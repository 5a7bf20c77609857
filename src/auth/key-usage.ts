/**
 * Last use of each key, coalesced: the request path only notes the time in memory, and one
 * statement per interval (a minute by default) writes every key used since, so authentication
 * never costs a database write per request.
 */
import type { Logger } from "pino";
import type { Db } from "../store/db.js";
import { apiKeyTouch } from "../store/sql/api-key-touch.js";

/** Records key use and flushes it periodically. */
export class KeyUsage {
  private pending = new Map<string, Date>();
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

  /** Notes that the key was used now (memory only). */
  touch(keyId: string): void {
    this.pending.set(keyId, new Date());
  }

  /** Writes what is pending; a failed write puts it back for the next flush (newer times win). */
  flush(): Promise<void> {
    if (this.pending.size === 0) return this.flushing;
    const batch = this.pending;
    this.pending = new Map();
    this.flushing = this.flushing.then(() =>
      apiKeyTouch(this.db, batch).catch((error: unknown) => {
        for (const [id, at] of batch) if (!this.pending.has(id)) this.pending.set(id, at);
        this.logger.warn({ err: error, keys: batch.size }, "could not record API key use; retrying at the next flush");
      }),
    );
    return this.flushing;
  }

  /** Stops the timer after a last flush. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
