import { FifoQueue } from "../core/fifo-queue.js";

/** An unbounded async queue feeding a response stream; producers never wait. */
export class MessageQueue<T> implements AsyncIterable<T> {
  private readonly items = new FifoQueue<T>();
  private waiter: (() => void) | undefined;
  private ended = false;
  private error: unknown;

  /** Adds a message unless the queue has ended. */
  push(item: T): void {
    if (this.ended) return;
    this.items.push(item);
    this.wakeUp();
  }

  /** Ends the stream after the queued messages, or with an error. */
  end(error?: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.error = error;
    this.wakeUp();
  }

  private wakeUp(): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      if (this.items.length > 0) {
        yield this.items.shift() as T;
        continue;
      }
      if (this.ended) {
        if (this.error !== undefined) throw this.error;
        return;
      }
      await new Promise<void>((resolve) => (this.waiter = resolve));
    }
  }
}
