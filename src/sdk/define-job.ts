/**
 * Typed job definitions: one object ties a job type's name to its input and output schemas and to
 * the handler a worker runs, so producers and workers share the types without codegen of their own.
 */
import type { PayloadInit, PayloadOf, PayloadSchema } from "./payload.js";

/** What a handler knows about the attempt it runs. */
export interface JobContext {
  /**
   * Aborted when the attempt must stop: the server revoked it (e.g. the task was cancelled), the
   * connection was lost (the server has re-queued it), the attempt's timeout passed, or the worker
   * is stopping. `signal.reason` is an Error saying which.
   */
  readonly signal: AbortSignal;
  readonly taskId: string;
  /** From 1. */
  readonly attempt: number;
  readonly maxAttempts: number;
  readonly jobType: string;
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
