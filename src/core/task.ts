/** Domain records of tasks, attempts and job types, independent of the wire format and the ORM. */
import type { TaskState } from "./task-state.js";

/** A typed payload: a protobuf Any without the generated types (type URL and encoded bytes). */
export interface Payload {
  typeUrl: string;
  value: Uint8Array;
}

/** How one attempt ended; "running" while it runs. */
export type AttemptOutcome = "running" | "succeeded" | "failed" | "cancelled" | "timed_out" | "lost" | "released";

/** A task as stored. Ids are decimal strings of the bigint primary key. */
export interface TaskRecord {
  id: string;
  namespace: string;
  jobType: string;
  state: TaskState;
  input: Payload;
  output: Payload | null;
  priority: number;
  attempt: number;
  maxAttempts: number;
  timeoutMs: number | null;
  runAt: Date;
  createdAt: Date;
  updatedAt: Date;
  finishedAt: Date | null;
  workerId: string | null;
  lastError: string | null;
  backoffBaseMs: number;
  backoffCapMs: number;
  leaseExpiresAt: Date | null;
  /** 0 to 1, with a message; the latest an attempt reported. */
  progress: number;
  progressMessage: string;
  /** An encoded taskwire.v1.Checkpoint, opaque here. */
  checkpoint: Uint8Array | null;
  /** The idempotency key it was submitted with (a payload key for dedup_by_payload), or null. */
  idempotencyKey: string | null;
  /** For a task a schedule created: the schedule's name and the fire time it stands for. */
  scheduleName: string | null;
  scheduleFireAt: Date | null;
  /** The tasks it depends on (ascending ids); empty without dependencies. */
  dependsOn: string[];
  /** While WAITING: how many of dependsOn have not SUCCEEDED yet; 0 otherwise. */
  unmetDependencies: number;
  /** The concurrency key it was submitted with (see JobTypeLimits), or null. */
  concurrencyKey: string | null;
  /** Set by Submit only: true when this task already held the key, so nothing was created. */
  deduplicated?: boolean;
}

/** One row of a task's history. */
export interface AttemptRecord {
  number: number;
  workerId: string;
  outcome: AttemptOutcome;
  error: string | null;
  startedAt: Date;
  endedAt: Date | null;
}

/** A task with what GetTask adds. */
export interface TaskDetail extends TaskRecord {
  attempts: AttemptRecord[];
  /** Tasks of the same job type that run first; set only for pending tasks. */
  queuePosition: number | null;
}

/** A validated task to insert, with every default already resolved. */
export interface NewTask {
  namespace: string;
  jobType: string;
  input: Payload;
  priority: number;
  maxAttempts: number;
  timeoutMs: number | null;
  /** Null: now, by the database clock. */
  runAt: Date | null;
  backoffBaseMs: number;
  backoffCapMs: number;
  /** Null or absent: no key. Unique per (namespace, job type) among the tasks holding it (see migration 0020). */
  idempotencyKey?: string | null;
  /** Existing tasks (ids) it waits for; absent or empty: none (see src/core/dependencies.ts). */
  dependsOn?: readonly string[];
  /** Earlier tasks of the same submit it waits for, by position; absent or empty: none. */
  dependsOnIndex?: readonly number[];
  /** Null or absent: no concurrency key. */
  concurrencyKey?: string | null;
  /** Its job type has limits (as far as the submitting replica knows): only the limited claim starts it. */
  limited?: boolean;
}

/** A job type as stored. */
export type JobTypeRecord = {
  namespace: string;
  name: string;
  /** Fully-qualified message name; "" for JSON. */
  inputType: string;
  outputType: string;
  /** Serialized google.protobuf.FileDescriptorSet, or null. */
  descriptors: Uint8Array | null;
  defaultPriority: number;
  defaultMaxAttempts: number;
  defaultTimeoutMs: number | null;
  backoffBaseMs: number;
  backoffCapMs: number;
  leaseMs: number;
  /** How long finished tasks are kept (ms); null: forever. */
  retentionMs: number | null;
  /** The module that runs its tasks on the server's thread pool; null: remote workers. */
  inlineModule: string | null;
  /** How long a finished task keeps its idempotency key (ms); null: it is free once the task finishes. */
  dedupWindowMs: number | null;
  /** Largest payload of its tasks (bytes); null: the server's limit, which also caps this. */
  maxPayloadBytes: number | null;
  createdAt: Date;
  updatedAt: Date;
} & JobTypeLimits;

/** At most `maxStarts` attempts start in any interval of `windowMs` (see src/core/claim-limits.ts). */
export interface RateLimit {
  maxStarts: number;
  windowMs: number;
}

/**
 * Limits on starting a job type's tasks; null: no such limit, and 0 is a limit (nothing starts).
 * A job type with any of them is claimed by the limited claim (src/dispatch/limited-claim.ts).
 */
export interface JobTypeLimits {
  rateLimit: RateLimit | null;
  /** RUNNING tasks of the job type. */
  maxRunning: number | null;
  /** RUNNING tasks per concurrency key; tasks without a key are not limited by it. */
  maxRunningPerKey: number | null;
}

/** A task leased to a worker: only (taskId, attempt, leaseToken) may report on it. */
export interface Assignment {
  taskId: string;
  namespace: string;
  jobType: string;
  input: Payload;
  attempt: number;
  maxAttempts: number;
  leaseToken: string;
  timeoutMs: number | null;
  createdAt: Date;
  leaseExpiresAt: Date;
  /** The checkpoint an earlier attempt saved (encoded taskwire.v1.Checkpoint), or null. */
  checkpoint: Uint8Array | null;
  /** It has dependencies, so `parents` is filled in (src/dispatch/claim-with-parents.ts). */
  hasDependencies: boolean;
  /** For a task with dependencies: each of them (SUCCEEDED) and its output, by ascending id; else empty. */
  parents: ParentOutput[];
}

/** A dependency of an assigned task and what it produced. */
export interface ParentOutput {
  taskId: string;
  jobType: string;
  /** Null when it completed without an output. */
  output: Payload | null;
}

/** The lease that a report must name. */
export interface LeaseRef {
  namespace: string;
  taskId: string;
  attempt: number;
  leaseToken: string;
}

/** A worker's report of success. */
export interface CompletionReport extends LeaseRef {
  output: Payload | null;
}

/** A worker's report of failure, or the server's verdict on a lost attempt. */
export interface FailureReport extends LeaseRef {
  error: string;
  /** Dead-letter at once instead of retrying. */
  nonRetryable: boolean;
  /** How the attempt is recorded: "failed" for a worker's report, "lost" when the worker went away, "timed_out" when an inline attempt was stopped at its timeout. */
  outcome: "failed" | "lost" | "timed_out";
}

/** A draining worker's hand-back of a task it will not finish. */
export interface ReleaseReport extends LeaseRef {
  reason: string;
}

/** Progress of an attempt. */
export interface ProgressReport extends LeaseRef {
  fraction: number;
  message: string;
}

/** What a task event reports. */
export type TaskEventKind = "created" | "state_changed" | "progress";

/** A durable task event; `seq` orders the events of a namespace. */
export interface TaskEventRecord {
  namespace: string;
  seq: bigint;
  taskId: string;
  jobType: string;
  kind: TaskEventKind;
  state: TaskState;
  previousState: TaskState | null;
  attempt: number;
  progress: number;
  progressMessage: string;
  error: string | null;
  workerId: string | null;
  at: Date;
  /** The key id (or "dev") whose request caused the event; null for the system and workers' reports. */
  actor: string | null;
}

/** Which events a watcher wants; empty lists mean "any". */
export interface EventFilter {
  taskIds: readonly string[];
  jobTypes: readonly string[];
  states: readonly TaskState[];
}
