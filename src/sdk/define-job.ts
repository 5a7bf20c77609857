/**
 * Typed job definitions: one object ties a job type's name to its input and output schemas and to
 * the handler a worker runs, so producers and workers share the types without codegen of their own.
 */
import type { CheckpointData } from "./checkpoint.js";
import type { ParentAccess } from "./parents.js";
import type { PayloadInit, PayloadOf, PayloadSchema } from "./payload.js";

/**
 * What a handler knows about the attempt it runs, and how it reports along the way. For a task
 * with dependencies, `parents` holds what they produced (see ParentAccess).
 */
export interface JobContext extends ParentAccess {
  /**
   * Aborted when the attempt must stop; `signal.reason` is an Error whose name says why:
   * "CancelledError" (a client cancelled the task), "TimeoutError" (the attempt's timeout passed),
   * "LeaseLostError" (the server took the task back, e.g. after missed heartbeats or a reconnect
   * that could not keep it), or a plain Error "worker stopping" (stop() ran out of grace; the task
   * is released to run again without counting this attempt). A lost connection alone does not abort:
   * the worker reconnects and keeps the work.
   */
  readonly signal: AbortSignal;
  readonly taskId: string;
  /** From 1. */
  readonly attempt: number;
  readonly maxAttempts: number;
  readonly jobType: string;
  /** The checkpoint an earlier attempt of this task saved (bytes or JSON, as saved), if any. */
  readonly previousCheckpoint: CheckpointData | undefined;
  /**
   * Reports progress (fraction 0 to 1, message up to 1000 characters). Fire-and-forget and cheap to
   * call often: the SDK sends at most one update per 200 ms per task, always the latest, and the
   * last one before the attempt's result. Never throws: fractions outside 0..1 are clamped, NaN is ignored.
   */
  progress(fraction: number, message?: string): void;
  /**
   * Saves state durably on the task, so the next attempt gets it as previousCheckpoint. Resolves
   * once the server stored it (or a newer checkpoint of this attempt); rejects with the server's
   * message when refused, or with the abort reason once the attempt was taken back. The attempt's
   * result is reported only after its checkpoints are answered.
   */
  checkpoint(data: CheckpointData): Promise<void>;
}

/**
 * Runs one attempt. Resolving completes the task with the value as output (undefined: no output);
 * rejecting fails the attempt, which is retried unless the error is a NonRetryableError.
 */
export type JobHandler<I extends PayloadSchema, O extends PayloadSchema> = (
  input: PayloadOf<I>,
  ctx: JobContext,
) => Promise<PayloadInit<O> | void>;

/** Per-job-type settings sent by registerJobType; unset ones take the server's defaults. */
export interface JobDefaults {
  /** -1000 to 1000; higher runs first. */
  priority?: number;
  /** 1 to 1000. */
  maxAttempts?: number;
  /** Per-attempt timeout, 1 ms to 24 h. */
  timeoutMs?: number;
  /** How long a worker holds a task without a heartbeat before it is taken back, 1 s to 1 h (server default 30 s). */
  leaseDurationMs?: number;
  /** How long finished tasks are kept, 1 s to 3650 days, or 0 to keep them forever (server default 7 days). */
  retentionMs?: number;
  /** Backoff between attempts (server default: 1 s base, 10 min cap). */
  defaultRetry?: RetryOptions;
  /** How long a finished task keeps its idempotency key, 1 s to 30 days and at most the retention (server default: none). */
  dedupWindowMs?: number;
  /** At most maxStarts attempts (0 to 1,000,000) start in any interval of windowMs (1 s to 24 h), across all replicas. */
  rateLimit?: RateLimitOptions;
  /** At most this many tasks of the job type run at once, 0 to 100,000 (unset: no limit). */
  maxRunning?: number;
  /** At most this many tasks with the same concurrencyKey run at once, 0 to 100,000 (unset: no limit). */
  maxRunningPerKey?: number;
}

/** A job type's rate limit (see RateLimit in proto/taskwire/v1/job_type.proto). */
export interface RateLimitOptions {
  maxStarts: number;
  windowMs: number;
}

/** Exponential backoff between attempts: the delay after attempt n is jittered within min(cap, base * 2^(n-1)). */
export interface RetryOptions {
  /** 0 to 24 h; 0 retries at once. */
  backoffBaseMs?: number;
  /** 0 to 24 h, at least the base. */
  backoffCapMs?: number;
}

/** A job type as producers see it: its name and payload schemas, no handler needed. */
export interface JobRef<I extends PayloadSchema = PayloadSchema, O extends PayloadSchema = PayloadSchema> {
  readonly name: string;
  readonly input: I;
  readonly output: O;
  readonly defaults?: JobDefaults | undefined;
}

/** A job type with the handler a worker runs for it. */
export interface Job<I extends PayloadSchema = PayloadSchema, O extends PayloadSchema = PayloadSchema> extends JobRef<I, O> {
  // Method syntax on purpose: it makes Job<FooSchema, "json"> assignable to Job, so a worker can
  // take a list of differently typed jobs.
  handler(input: PayloadOf<I>, ctx: JobContext): Promise<PayloadInit<O> | void>;
}

/** Defines a job; the handler's input and output types follow from the schemas. */
export function defineJob<I extends PayloadSchema, O extends PayloadSchema>(definition: {
  name: string;
  input: I;
  output: O;
  handler: JobHandler<I, O>;
  defaults?: JobDefaults;
}): Job<I, O> {
  const { name, input, output, handler, defaults } = definition;
  return Object.freeze({ name, input, output, handler, defaults });
}

/**
 * Thrown by a handler when retrying cannot help (bad input, a permanent refusal): the attempt is
 * reported with non_retryable set, and the server dead-letters the task at once.
 */
export class NonRetryableError extends Error {
  override name = "NonRetryableError";
}

/** True for a NonRetryableError, also one from another copy of the SDK (instanceof alone would miss it). */
export function isNonRetryableError(error: unknown): boolean {
  return error instanceof NonRetryableError || (error instanceof Error && error.name === "NonRetryableError");
}
