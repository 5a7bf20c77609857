/** Bounds on every knob a client controls. Each is named in the error that enforces it. */
export const LIMITS = {
  /** Tasks per SubmitBatch. */
  maxBatch: 1_000,
  /** Page size of list RPCs. */
  maxPageSize: 1_000,
  defaultPageSize: 100,
  /** Task priority range. */
  minPriority: -1_000,
  maxPriority: 1_000,
  /** max_attempts range. */
  maxAttempts: 1_000,
  /** Timeout range (ms). */
  minTimeoutMs: 1,
  maxTimeoutMs: 24 * 60 * 60 * 1_000,
  /** Backoff base and cap range (ms); 0 retries at once. */
  maxBackoffMs: 24 * 60 * 60 * 1_000,
  defaultBackoffBaseMs: 1_000,
  defaultBackoffCapMs: 600_000,
  /** Lease length range and default (ms). */
  minLeaseMs: 1_000,
  maxLeaseMs: 60 * 60 * 1_000,
  defaultLeaseMs: 30_000,
  /** Progress messages. */
  maxProgressChars: 1_000,
  /** Encoded checkpoint size (bytes). */
  maxCheckpointBytes: 1024 * 1024,
  /** Leases per Heartbeat call. */
  maxLeasesPerHeartbeat: 1_000,
  /** How long a job type keeps finished tasks (ms): default, and range (0 keeps them forever). */
  defaultRetentionMs: 7 * 24 * 60 * 60 * 1_000,
  minRetentionMs: 1_000,
  maxRetentionMs: 3_650 * 24 * 60 * 60 * 1_000,
  /** WaitTask and Submit's wait (ms). */
  maxWaitMs: 5 * 60 * 1_000,
  /** run_at at most this far ahead (ms). */
  maxDelayMs: 366 * 24 * 60 * 60 * 1_000,
  /** Encoded payload size (bytes): the default of --max-payload-bytes. */
  maxPayloadBytes: 4 * 1024 * 1024,
  /**
   * Nesting of a JSON payload (google.protobuf.Value, Struct, ListValue): each level is two protobuf
   * messages, and protobuf-es decodes at most 100 nested messages, so 32 leaves room for the Any around it.
   */
  maxJsonDepth: 32,
  /** Worker credits per stream and tasks per unary claim. */
  maxCredits: 1_000,
  /** Job types one worker serves. */
  maxWorkerJobTypes: 100,
  /** Stored error text; longer reports are truncated, not rejected. */
  maxErrorChars: 10_000,
  /** Cancel reason. */
  maxReasonChars: 1_000,
  /** Idempotency keys (characters). */
  maxIdempotencyKeyChars: 256,
  /** How long a finished task may keep its idempotency key (ms). */
  minDedupWindowMs: 1_000,
  maxDedupWindowMs: 30 * 24 * 60 * 60 * 1_000,
  /** Cron expressions (characters) and time zone names. */
  maxCronChars: 200,
  maxTimeZoneChars: 64,
  /** Schedules per namespace. */
  maxSchedules: 10_000,
  /** Dependencies of one task (depends_on and depends_on_index together). */
  maxDependencies: 100,
  /** Dependencies in one Submit / SubmitBatch call, over all its tasks. */
  maxDependenciesPerCall: 10_000,
  /** Rate limits: starts per window (0: none), and the window (ms). */
  maxRateStarts: 1_000_000,
  minRateWindowMs: 1_000,
  maxRateWindowMs: 24 * 60 * 60 * 1_000,
  /** max_running and max_running_per_key (0: none start). */
  maxRunningLimit: 100_000,
  /** Concurrency keys (characters). */
  maxConcurrencyKeyChars: 128,
} as const;

/**
 * The limits an operator configures (flags of `taskwire server start`), each with a default and
 * bounds. Exceeding one answers RESOURCE_EXHAUSTED or INVALID_ARGUMENT naming it.
 */
export interface ServerLimits {
  /** Largest request message, encoded (bytes); Connect refuses larger ones before decoding. */
  maxMessageBytes: number;
  /** Largest task input or output (encoded bytes); a job type may set a lower limit. */
  maxPayloadBytes: number;
  /** Open streams (Claim, StreamStatus, Health.Watch) per API key on one replica. */
  maxStreamsPerKey: number;
  /** Tasks per second an API key may submit on one replica (token bucket refill). */
  submitRatePerSec: number;
  /** Tasks an API key may submit at once before the rate applies (token bucket size). */
  submitBurst: number;
  /** Largest page of a list RPC. */
  maxPageSize: number;
  /** Page size when a request says 0 (at most maxPageSize). */
  defaultPageSize: number;
  /** Longest WaitTask, and Submit's wait (ms). */
  maxWaitMs: number;
  /** Longest a stream stays open (ms); then it ends with UNAVAILABLE, and the client resumes. */
  maxStreamMs: number;
}

/** One limit's flag, default and bounds (for the CLI, the README table and validation). */
export interface LimitSpec {
  flag: string;
  /** What it limits, for --help. */
  what: string;
  min: number;
  max: number;
  unit: string;
}

/** Defaults: generous enough for the benchmarks, small enough to protect a shared server. */
export const DEFAULT_SERVER_LIMITS: ServerLimits = {
  maxMessageBytes: 5 * 1024 * 1024,
  maxPayloadBytes: LIMITS.maxPayloadBytes,
  maxStreamsPerKey: 1_000,
  submitRatePerSec: 20_000,
  submitBurst: 100_000,
  maxPageSize: LIMITS.maxPageSize,
  defaultPageSize: LIMITS.defaultPageSize,
  maxWaitMs: LIMITS.maxWaitMs,
  maxStreamMs: 60 * 60 * 1_000,
};

/** Flags and bounds of every configurable limit. */
export const LIMIT_SPECS: Record<keyof ServerLimits, LimitSpec> = {
  maxMessageBytes: { what: "largest request message", flag: "--max-message-bytes", min: 64 * 1024, max: 256 * 1024 * 1024, unit: "bytes" },
  maxPayloadBytes: { what: "largest task input or output; job types may set less", flag: "--max-payload-bytes", min: 1_024, max: 255 * 1024 * 1024, unit: "bytes" },
  maxStreamsPerKey: { what: "open streams per API key on this replica", flag: "--max-streams-per-key", min: 1, max: 100_000, unit: "streams" },
  submitRatePerSec: { what: "tasks per second per API key on this replica", flag: "--submit-rate", min: 1, max: 10_000_000, unit: "tasks/s" },
  submitBurst: { what: "tasks per API key at once before --submit-rate applies", flag: "--submit-burst", min: 1, max: 10_000_000, unit: "tasks" },
  maxPageSize: { what: "largest page of list RPCs", flag: "--max-page-size", min: 1, max: 10_000, unit: "items" },
  defaultPageSize: { what: "page size when a request says 0", flag: "--default-page-size", min: 1, max: 10_000, unit: "items" },
  maxWaitMs: { what: "longest WaitTask and Submit wait", flag: "--max-wait-ms", min: 1_000, max: 60 * 60 * 1_000, unit: "ms" },
  maxStreamMs: { what: "longest a stream stays open before it ends with UNAVAILABLE", flag: "--max-stream-ms", min: 1_000, max: 7 * 24 * 60 * 60 * 1_000, unit: "ms" },
};

/** Problems with a set of limits (empty when they are usable): each outside its bounds, or inconsistent. */
export function serverLimitProblems(limits: ServerLimits): string[] {
  const problems: string[] = [];
  for (const [name, spec] of Object.entries(LIMIT_SPECS) as [keyof ServerLimits, LimitSpec][]) {
    const value = limits[name];
    if (!Number.isInteger(value) || value < spec.min || value > spec.max) {
      problems.push(`${spec.flag} is ${value}; allowed: ${spec.min} to ${spec.max} ${spec.unit}`);
    }
  }
  if (limits.defaultPageSize > limits.maxPageSize) {
    problems.push(`--default-page-size (${limits.defaultPageSize}) is larger than --max-page-size (${limits.maxPageSize})`);
  }
  // A payload travels inside a request message with a small envelope around it.
  if (limits.maxPayloadBytes + 64 * 1024 > limits.maxMessageBytes) {
    problems.push(`--max-payload-bytes (${limits.maxPayloadBytes}) needs --max-message-bytes of at least ${limits.maxPayloadBytes + 64 * 1024} (64 KiB for the rest of the request)`);
  }
  return problems;
}
