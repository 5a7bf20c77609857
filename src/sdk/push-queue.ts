/**
 * A push queue read as an async iterable: the request side of a bidirectional stream. Connect pulls
 * requests from an AsyncIterable, while the worker produces them from callbacks (a handler settles);
 * this bridges the two without unbounded promise chains.
 */
import { FifoQueue } from "../core/fifo-queue.js";

/** A single-consumer queue: push() from anywhere, one reader; close() ends the iteration after the items queued so far. */
export interface PushQueue<T> extends AsyncIterable<T> {
  /** Queues an item; false (and dropped) once the queue is closed. */
  push(item: T): boolean;
  /** Ends the iteration once the queued items are read; idempotent. */
  close(): void;
  readonly closed: boolean;
}

/** Creates an empty push queue. */
export function createPushQueue<T>(): PushQueue<T> {
  const items = new FifoQueue<T>();
  let closed = false;
  let wake: (() => void) | undefined;
  let iterator: AsyncGenerator<T, void, undefined> | undefined;

  async function* drain(): AsyncGenerator<T, void, undefined> {
    for (;;) {
      // Items pushed before close() are still delivered: a report queued just before stop() must
      // reach the server before the stream half-closes.
      while (items.length > 0) yield items.shift() as T;
      if (closed) return;
      await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
    }
  }

  return {
    get closed() {
      return closed;
    },
    push(item) {
      if (closed) return false;
      items.push(item);
      wake?.();
      return true;
    },
    close() {
      closed = true;
      wake?.();
    },
    [Symbol.asyncIterator]() {
      // Always the same iterator, as for a generator object: Connect asks for the iterator again to
      // call return()/throw() when a call ends, and a second reader must not steal messages.
      iterator ??= drain();
      return iterator;
    },
  };
}
