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
  /** Encoded payload size (bytes). */
  maxPayloadBytes: 4 * 1024 * 1024,
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
  /** Rate limits: starts per window (0: none), and the window (ms). */
  maxRateStarts: 1_000_000,
  minRateWindowMs: 1_000,
  maxRateWindowMs: 24 * 60 * 60 * 1_000,
  /** max_running and max_running_per_key (0: none start). */
  maxRunningLimit: 100_000,
  /** Concurrency keys (characters). */
  maxConcurrencyKeyChars: 128,
} as const;
