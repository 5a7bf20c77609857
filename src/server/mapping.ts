/** Domain records to protobuf messages: the only module that knows both shapes. */
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type {
  Assignment as AssignmentRecord,
  AttemptOutcome as DomainOutcome,
  JobTypeRecord,
  TaskDetail,
  TaskEventKind as DomainEventKind,
  TaskEventRecord,
  TaskRecord,
} from "../core/task.js";
import type { TaskState as DomainState } from "../core/task-state.js";
import { TASK_STATES } from "../core/task-state.js";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { fromBinary } from "@bufbuild/protobuf";
import { JobTypeSchema, RateLimitSchema, RetryPolicySchema, type JobType, type RetryPolicy } from "../gen/taskwire/v1/job_type_pb.js";
import {
  AttemptOutcome,
  CheckpointSchema,
  TaskAttemptSchema,
  TaskEventKind,
  TaskEventSchema,
  TaskSchema,
  TaskState,
  type Checkpoint,
  type Task,
  type TaskEvent,
} from "../gen/taskwire/v1/task_pb.js";
import { AssignmentSchema, ParentOutputSchema, type Assignment } from "../gen/taskwire/v1/worker_pb.js";
import { MissedFirePolicy, ScheduleSchema, type Schedule } from "../gen/taskwire/v1/schedule_pb.js";
import { TaskSpecSchema } from "../gen/taskwire/v1/task_pb.js";
import type { MissedFirePolicy as DomainPolicy, ScheduleRecord } from "../core/schedule.js";
import { toAny } from "./payloads.js";
import type { ApiKeyRecord } from "../core/api-key.js";
import { ROLES, type Role as DomainRole } from "../core/roles.js";
import type { NamespaceRecord } from "../store/sql/namespace-insert.js";
import type { AuditAction as DomainAuditAction, AuditRecord } from "../core/audit.js";
import { ApiKeySchema, AuditAction, AuditEventSchema, NamespaceSchema, Role as ProtoRole, type ApiKey, type AuditEvent, type Namespace } from "../gen/taskwire/v1/admin_pb.js";

const STATE_TO_PROTO: Record<DomainState, TaskState> = {
  waiting: TaskState.WAITING,
  pending: TaskState.PENDING,
  running: TaskState.RUNNING,
  succeeded: TaskState.SUCCEEDED,
  dead: TaskState.DEAD,
  cancelled: TaskState.CANCELLED,
};

const OUTCOME_TO_PROTO: Record<DomainOutcome, AttemptOutcome> = {
  running: AttemptOutcome.RUNNING,
  succeeded: AttemptOutcome.SUCCEEDED,
  failed: AttemptOutcome.FAILED,
  cancelled: AttemptOutcome.CANCELLED,
  timed_out: AttemptOutcome.TIMED_OUT,
  lost: AttemptOutcome.LOST,
  released: AttemptOutcome.RELEASED,
};

/** A retry policy as protobuf. */
function retryToProto(r: { backoffBaseMs: number; backoffCapMs: number }): RetryPolicy {
  return create(RetryPolicySchema, { backoffBase: durationFromMs(r.backoffBaseMs), backoffCap: durationFromMs(r.backoffCapMs) });
}

/** A stored checkpoint (encoded taskwire.v1.Checkpoint) as a message. */
function checkpointToProto(bytes: Uint8Array | null): Checkpoint | undefined {
  return bytes === null ? undefined : fromBinary(CheckpointSchema, bytes);
}

const EVENT_KIND_TO_PROTO: Record<DomainEventKind, TaskEventKind> = {
  created: TaskEventKind.CREATED,
  state_changed: TaskEventKind.STATE_CHANGED,
  progress: TaskEventKind.PROGRESS,
};

/** A task event. */
export function eventToProto(e: TaskEventRecord): TaskEvent {
  return create(TaskEventSchema, {
    sequence: e.seq,
    taskId: e.taskId,
    jobType: e.jobType,
    kind: EVENT_KIND_TO_PROTO[e.kind],
    state: STATE_TO_PROTO[e.state],
    previousState: e.previousState === null ? TaskState.UNSPECIFIED : STATE_TO_PROTO[e.previousState],
    attempt: e.attempt,
    progress: e.progress,
    progressMessage: e.progressMessage,
    error: e.error ?? "",
    workerId: e.workerId ?? "",
    at: timestampFromDate(e.at),
    actor: e.actor ?? "",
  });
}

/** A protobuf TaskState as the domain state, or undefined for UNSPECIFIED / unknown numbers. */
export function stateFromProto(state: TaskState): DomainState | undefined {
  return TASK_STATES.find((s) => STATE_TO_PROTO[s] === state);
}

/** A task (with attempts and queue position when given a detail). */
export function taskToProto(task: TaskRecord | TaskDetail): Task {
  const detail = "attempts" in task ? task : undefined;
  return create(TaskSchema, {
    id: task.id,
    jobType: task.jobType,
    state: STATE_TO_PROTO[task.state],
    input: toAny(task.input),
    output: task.output === null ? undefined : toAny(task.output),
    priority: task.priority,
    attempt: task.attempt,
    maxAttempts: task.maxAttempts,
    timeout: task.timeoutMs === null ? undefined : durationFromMs(task.timeoutMs),
    runAt: timestampFromDate(task.runAt),
    createdAt: timestampFromDate(task.createdAt),
    updatedAt: timestampFromDate(task.updatedAt),
    finishedAt: task.finishedAt === null ? undefined : timestampFromDate(task.finishedAt),
    workerId: task.workerId ?? "",
    lastError: task.lastError ?? "",
    queuePosition: detail?.queuePosition === null || detail === undefined ? undefined : BigInt(detail.queuePosition),
    attempts: (detail?.attempts ?? []).map((a) =>
      create(TaskAttemptSchema, {
        number: a.number,
        workerId: a.workerId,
        outcome: OUTCOME_TO_PROTO[a.outcome],
        error: a.error ?? "",
        startedAt: timestampFromDate(a.startedAt),
        endedAt: a.endedAt === null ? undefined : timestampFromDate(a.endedAt),
      }),
    ),
    retry: retryToProto(task),
    progress: task.progress,
    progressMessage: task.progressMessage,
    checkpoint: detail === undefined ? undefined : checkpointToProto(task.checkpoint),
    leaseExpiresAt: task.leaseExpiresAt === null ? undefined : timestampFromDate(task.leaseExpiresAt),
    idempotencyKey: task.idempotencyKey ?? "",
    deduplicated: task.deduplicated === true,
    schedule: task.scheduleName ?? "",
    scheduleFireTime: task.scheduleFireAt === null ? undefined : timestampFromDate(task.scheduleFireAt),
    dependsOn: task.dependsOn,
    unmetDependencies: task.unmetDependencies,
    concurrencyKey: task.concurrencyKey ?? "",
  });
}

/** A job type; `serverMaxPayloadBytes` caps the payload limit it shows. */
export function jobTypeToProto(record: JobTypeRecord, serverMaxPayloadBytes: number): JobType {
  return create(JobTypeSchema, {
    name: record.name,
    inputType: record.inputType,
    outputType: record.outputType,
    descriptors: record.descriptors === null ? undefined : fromBinary(FileDescriptorSetSchema, record.descriptors),
    defaultPriority: record.defaultPriority,
    defaultMaxAttempts: record.defaultMaxAttempts,
    defaultTimeout: record.defaultTimeoutMs === null ? undefined : durationFromMs(record.defaultTimeoutMs),
    createdAt: timestampFromDate(record.createdAt),
    updatedAt: timestampFromDate(record.updatedAt),
    defaultRetry: retryToProto(record),
    leaseDuration: durationFromMs(record.leaseMs),
    retention: record.retentionMs === null ? undefined : durationFromMs(record.retentionMs),
    inlineModule: record.inlineModule ?? "",
    dedupWindow: record.dedupWindowMs === null ? undefined : durationFromMs(record.dedupWindowMs),
    maxPayloadBytes: Math.min(record.maxPayloadBytes ?? serverMaxPayloadBytes, serverMaxPayloadBytes),
    rateLimit: record.rateLimit === null ? undefined : create(RateLimitSchema, { maxStarts: record.rateLimit.maxStarts, window: durationFromMs(record.rateLimit.windowMs) }),
    maxRunning: record.maxRunning ?? undefined,
    maxRunningPerKey: record.maxRunningPerKey ?? undefined,
  });
}

/** An assignment for a worker. */
export function assignmentToProto(a: AssignmentRecord): Assignment {
  return create(AssignmentSchema, {
    taskId: a.taskId,
    jobType: a.jobType,
    input: toAny(a.input),
    attempt: a.attempt,
    maxAttempts: a.maxAttempts,
    leaseToken: a.leaseToken,
    timeout: a.timeoutMs === null ? undefined : durationFromMs(a.timeoutMs),
    createdAt: timestampFromDate(a.createdAt),
    leaseExpiresAt: timestampFromDate(a.leaseExpiresAt),
    checkpoint: checkpointToProto(a.checkpoint),
    parents: a.parents.map((p) => create(ParentOutputSchema, { taskId: p.taskId, jobType: p.jobType, output: p.output === null ? undefined : toAny(p.output) })),
  });
}

const POLICY_TO_PROTO: Record<DomainPolicy, MissedFirePolicy> = {
  skip: MissedFirePolicy.SKIP,
  run_once: MissedFirePolicy.RUN_ONCE,
};

/** A protobuf MissedFirePolicy as the domain's (UNSPECIFIED is SKIP), or undefined for unknown numbers. */
export function policyFromProto(policy: MissedFirePolicy): DomainPolicy | undefined {
  if (policy === MissedFirePolicy.UNSPECIFIED) return "skip";
  return (Object.keys(POLICY_TO_PROTO) as DomainPolicy[]).find((p) => POLICY_TO_PROTO[p] === policy);
}

/** A schedule, with its task as the resolved TaskSpec each fire submits. */
export function scheduleToProto(s: ScheduleRecord): Schedule {
  return create(ScheduleSchema, {
    name: s.name,
    cron: s.cron,
    timeZone: s.timeZone,
    task: create(TaskSpecSchema, {
      jobType: s.jobType,
      input: toAny(s.input),
      priority: s.priority,
      maxAttempts: s.maxAttempts,
      timeout: s.timeoutMs === null ? undefined : durationFromMs(s.timeoutMs),
      retry: retryToProto(s),
      concurrencyKey: s.concurrencyKey ?? "",
    }),
    missedFirePolicy: POLICY_TO_PROTO[s.missedPolicy],
    paused: s.paused,
    nextFireTime: s.nextFireAt === null ? undefined : timestampFromDate(s.nextFireAt),
    lastFireTime: s.lastFireAt === null ? undefined : timestampFromDate(s.lastFireAt),
    lastTaskId: s.lastTaskId ?? "",
    lastError: s.lastError ?? "",
    createdAt: timestampFromDate(s.createdAt),
    updatedAt: timestampFromDate(s.updatedAt),
  });
}

const ROLE_TO_PROTO: Record<DomainRole, ProtoRole> = {
  producer: ProtoRole.PRODUCER,
  worker: ProtoRole.WORKER,
  watcher: ProtoRole.WATCHER,
  admin: ProtoRole.ADMIN,
};

/** A protobuf Role as the domain role, or undefined for UNSPECIFIED / unknown numbers. */
export function roleFromProto(role: ProtoRole): DomainRole | undefined {
  return ROLES.find((r) => ROLE_TO_PROTO[r] === role);
}

/** An API key, without any secret. */
export function apiKeyToProto(key: ApiKeyRecord): ApiKey {
  return create(ApiKeySchema, {
    id: key.id,
    namespace: key.namespace,
    roles: key.roles.map((r) => ROLE_TO_PROTO[r]),
    description: key.description,
    createdAt: timestampFromDate(key.createdAt),
    createdBy: key.createdBy,
    expiresAt: key.expiresAt === null ? undefined : timestampFromDate(key.expiresAt),
    revokedAt: key.revokedAt === null ? undefined : timestampFromDate(key.revokedAt),
    revokedBy: key.revokedBy ?? "",
    lastUsedAt: key.lastUsedAt === null ? undefined : timestampFromDate(key.lastUsedAt),
  });
}

/** A namespace. */
export function namespaceToProto(ns: NamespaceRecord): Namespace {
  return create(NamespaceSchema, { name: ns.name, createdAt: timestampFromDate(ns.createdAt), createdBy: ns.createdBy ?? "" });
}

const AUDIT_ACTION_TO_PROTO: Record<DomainAuditAction, AuditAction> = {
  namespace_created: AuditAction.NAMESPACE_CREATED,
  api_key_created: AuditAction.API_KEY_CREATED,
  api_key_revoked: AuditAction.API_KEY_REVOKED,
};

/** An audit log entry. */
export function auditEventToProto(entry: AuditRecord): AuditEvent {
  return create(AuditEventSchema, {
    id: entry.id,
    at: timestampFromDate(entry.at),
    action: AUDIT_ACTION_TO_PROTO[entry.action],
    namespace: entry.namespace,
    target: entry.target,
    actor: entry.actor,
  });
}
