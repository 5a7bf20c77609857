/**
 * Inline jobs: short CPU-bound handlers that run inside the server, on its thread pool. A module in
 * the server's inline folder default-exports one defineInlineJob(); producers import the same
 * definition to register and submit it with typed payloads.
 */
import type { JobDefaults, JobRef } from "../sdk/define-job.js";
import type { ParentAccess } from "../sdk/parents.js";
import type { PayloadInit, PayloadOf, PayloadSchema } from "../sdk/payload.js";

/**
 * What an inline handler learns about its attempt, and its dependencies' outputs (as for remote
 * workers). It stops when its thread is stopped (timeout, cancel).
 */
export interface InlineContext extends ParentAccess {
  readonly taskId: string;
  readonly attempt: number;
}

/** An inline job: a JobRef (for producers) with the module the server loads and its handler. */
export interface InlineJob<I extends PayloadSchema = PayloadSchema, O extends PayloadSchema = PayloadSchema> extends JobRef<I, O> {
  /** The module's path inside the server's inline folder, e.g. "inline/hash.ts". */
  readonly module: string;
  handler(input: PayloadOf<I>, ctx: InlineContext): PayloadInit<O> | void | Promise<PayloadInit<O> | void>;
}

/** Defines an inline job; the handler's input and output types follow from the schemas. */
export function defineInlineJob<I extends PayloadSchema, O extends PayloadSchema>(definition: {
  name: string;
  module: string;
  input: I;
  output: O;
  handler: (input: PayloadOf<I>, ctx: InlineContext) => PayloadInit<O> | void | Promise<PayloadInit<O> | void>;
  defaults?: JobDefaults;
}): InlineJob<I, O> {
  const { name, module, input, output, handler, defaults } = definition;
  return Object.freeze({ name, module, input, output, handler, defaults });
}

/** True for a defineInlineJob() result (also from another copy of this module). */
export function isInlineJob(value: unknown): value is InlineJob {
  return typeof value === "object" && value !== null && typeof (value as InlineJob).module === "string" && typeof (value as InlineJob).handler === "function";
}
