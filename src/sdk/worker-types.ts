/** The worker's public surface: options, events and the Worker interface (the machinery is in worker.ts). */
import type { Job } from "./define-job.js";
import type { ConnectionOptions } from "./transport.js";

/** Where the worker logs; pino's (fields, message) order, which console also accepts. */
export interface WorkerLogger {
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}

/** Worker settings. */
export type WorkerOptions = ConnectionOptions & {
  /** The job types this worker runs (1 to 100, distinct names); each must be registered. */
  jobs: readonly Job[];
  /** Handlers run at once, 1 to 1000. */
  concurrency: number;
  /**
   * Tasks held ready beyond `concurrency`, so a handler slot that frees up starts its next task at
   * once instead of after a round trip to the server (default 0; concurrency + prefetch at most
   * 1000, sent to the server as the stream's credits). A prefetched task is leased while it waits:
   * its lease is kept alive by heartbeats, but its timeout runs, so prefetch suits short tasks.
   */
  prefetch?: number;
  /** Names the worker in task history; unset: the server makes one up (kept across reconnects). */
  workerId?: string;
  /** Default: warnings and errors to the console, info dropped. */
  logger?: WorkerLogger;
  /** Reconnect backoff with jitter: the delay doubles from initialDelayMs (100) up to maxDelayMs (5000). */
  reconnect?: { initialDelayMs?: number; maxDelayMs?: number };
};

/** How stop() drains the worker. */
export interface StopOptions {
  /** How long running handlers may take to finish and report before they are aborted and their tasks released; default 10 000. */
  graceMs?: number;
}

/**
 * How a started attempt ended for this worker: its result was accepted as "completed" or "failed";
 * "released" by stop() back to PENDING without counting the attempt; or "revoked": taken back by the
 * server (cancelled, timed out, lease lost, a report rejected) or left unanswered when the worker stopped.
 */
export type TaskOutcome = "completed" | "failed" | "revoked" | "released";

/** Typed events, so tests can wait for them instead of sleeping. */
export interface WorkerEvents {
  /** A stream was welcomed (the first connection and every reconnection). */
  connected: [{ workerId: string }];
  "task:started": [{ taskId: string; attempt: number }];
  /** Exactly once per task:started, when the outcome is known and the handler has returned (or the worker stopped). */
  "task:finished": [{ taskId: string; attempt: number; outcome: TaskOutcome }];
  /** The server accepted the release of a started attempt during stop(); task:finished follows with "released". */
  "task:released": [{ taskId: string; attempt: number }];
  /** A welcomed stream ended; `error` is unset when it ended cleanly (e.g. by stop()). Running handlers keep going. */
  disconnected: [{ error?: unknown }];
}

/** A running worker. */
export interface Worker {
  /**
   * Connects; resolves when the server welcomed the stream. Transient failures (server not up yet)
   * are retried; a permanent one (e.g. INVALID_ARGUMENT for an unregistered job type) rejects and
   * stops the worker. Resolves without connecting if stop() is called first.
   */
  start(): Promise<void>;
  /**
   * Drains: asks the server for no new work, lets running handlers finish and report for up to
   * graceMs, then aborts the rest and releases their tasks (back to PENDING, attempt not counted),
   * waits briefly for the answers, and closes the stream and the connection. Later calls return the
   * first call's promise.
   */
  stop(options?: StopOptions): Promise<void>;
  /** Subscribes to an event; returns the unsubscribe function. */
  on<E extends keyof WorkerEvents>(event: E, listener: (...args: WorkerEvents[E]) => void): () => void;
  /** Subscribes to the next occurrence of an event; returns the unsubscribe function. */
  once<E extends keyof WorkerEvents>(event: E, listener: (...args: WorkerEvents[E]) => void): () => void;
  /** The id the server knows this worker by, once welcomed. */
  readonly workerId: string | undefined;
}
