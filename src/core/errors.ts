/**
 * Domain errors with stable codes. One interceptor in src/server maps them to Connect codes; the
 * domain and store never import Connect.
 */

/** The closed set of domain error codes. */
export type TaskwireErrorCode =
  | "INVALID_ARGUMENT"
  | "NOT_FOUND"
  | "ALREADY_EXISTS"
  | "ILLEGAL_TRANSITION"
  | "STALE_LEASE"
  | "PAYLOAD_NOT_RENDERABLE"
  | "RESOURCE_EXHAUSTED"
  | "UNAUTHENTICATED"
  | "PERMISSION_DENIED"
  | "DATABASE_UNAVAILABLE"
  /** Concurrent work kept changing what a request depends on past its bounded retries: transient, nothing written. */
  | "CONTENDED"
  | "DEADLINE_EXCEEDED"
  | "INTERNAL";

/** An error the engine raises on purpose; its message is safe to show to clients. */
export class TaskwireError extends Error {
  override readonly name = "TaskwireError";
  constructor(
    readonly code: TaskwireErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Shorthand for an INVALID_ARGUMENT error naming the field. */
export function invalidArgument(field: string, message: string): TaskwireError {
  return new TaskwireError("INVALID_ARGUMENT", `${field}: ${message}`);
}
