/**
 * Coalesces one attempt's progress updates: handlers may call ctx.progress() in a tight loop, while
 * the server only keeps the latest value, so at most one message per interval goes on the stream and
 * the newest value always follows eventually.
 */

/** Sends one progress value; false when no stream can take it now (it is kept for later). */
export type ProgressSender = (fraction: number, message: string) => boolean;

/** A per-attempt progress throttle. */
export class ProgressThrottle {
  private pending: { fraction: number; message: string } | undefined;
  private lastSentAt = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly send: ProgressSender,
    private readonly intervalMs = 200,
  ) {}

  /** Records the latest value; sends it now, or once the interval since the last send has passed. */
  update(fraction: number, message: string): void {
    this.pending = { fraction, message };
    this.trySend(false);
  }

  /** Retries a value held back while no stream could take it (after a reconnect), still throttled. */
  resume(): void {
    this.trySend(false);
  }

  /** Sends a pending value at once: right before the final report, which would make it too late. */
  flush(): void {
    this.trySend(true);
  }

  /** Drops any pending value and timer: the attempt is over. */
  cancel(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = undefined;
  }

  private trySend(force: boolean): void {
    const pending = this.pending;
    if (pending === undefined) return;
    const waitMs = this.lastSentAt + this.intervalMs - Date.now();
    if (!force && waitMs > 0) {
      // unref: a progress tick must never be what keeps a stopping process alive.
      this.timer ??= setTimeout(() => {
        this.timer = undefined;
        this.trySend(false);
      }, waitMs).unref();
      return;
    }
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.send(pending.fraction, pending.message)) {
      this.lastSentAt = Date.now();
      this.pending = undefined;
    }
  }
}
