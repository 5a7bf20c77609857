/**
 * The Claim stream's messages as the worker builds and reads them, kept apart from the worker's
 * state machine so each request's shape is defined once.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationMs, type Any } from "@bufbuild/protobuf/wkt";
import type { Checkpoint } from "../gen/taskwire/v1/task_pb.js";
import {
  ClaimRequestSchema,
  LeaseSchema,
  RevokeReason,
  type Assignment,
  type ClaimRequest,
  type Lease,
  type WorkerWelcome,
} from "../gen/taskwire/v1/worker_pb.js";

/** Heartbeat interval when the server's welcome does not name one. */
const DEFAULT_HEARTBEAT_MS = 10_000;
/** Floor on the heartbeat interval, so a bogus tiny value cannot turn into a busy loop. */
const MIN_HEARTBEAT_MS = 100;
/** The proto's bound on progress messages and release reasons. */
const MAX_NOTE_CHARS = 1_000;

type RequestInit = MessageInitShape<typeof ClaimRequestSchema>["message"];

function request(message: RequestInit): ClaimRequest {
  return create(ClaimRequestSchema, { message });
}

/** The key of one attempt in the worker's tables: report_result and revoked name attempts this way. */
export function runKey(taskId: string, attempt: number): string {
  return `${taskId}#${attempt}`;
}

/** The lease of an assignment, as hello.held and welcome.adopted name it. */
export function leaseOf(assignment: Assignment): Lease {
  const { taskId, attempt, leaseToken } = assignment;
  return create(LeaseSchema, { taskId, attempt, leaseToken });
}

/** The first message of a stream; `held` lists the leases to carry over from a broken stream. */
export function helloRequest(workerId: string, jobTypes: string[], credits: number, held: Lease[]): ClaimRequest {
  return request({ case: "hello", value: { workerId, jobTypes, credits, held } });
}

/** Extends the leases of every task the stream holds. */
export function heartbeatRequest(): ClaimRequest {
  return request({ case: "heartbeat", value: {} });
}

/** Asks the server to assign nothing more to this stream. */
export function drainRequest(): ClaimRequest {
  return request({ case: "drain", value: {} });
}

/** Progress of an attempt (the message is cut to the proto's bound rather than refused). */
export function progressRequest(a: Assignment, fraction: number, message: string): ClaimRequest {
  return request({ case: "progress", value: { taskId: a.taskId, attempt: a.attempt, leaseToken: a.leaseToken, fraction, message: clip(message) } });
}

/** A checkpoint of an attempt. */
export function checkpointRequest(a: Assignment, checkpoint: Checkpoint): ClaimRequest {
  return request({ case: "checkpoint", value: { taskId: a.taskId, attempt: a.attempt, leaseToken: a.leaseToken, checkpoint } });
}

/** A successful outcome. */
export function completeRequest(a: Assignment, output: Any | undefined): ClaimRequest {
  return request({ case: "complete", value: { taskId: a.taskId, attempt: a.attempt, leaseToken: a.leaseToken, output } });
}

/** A failed outcome. */
export function failRequest(a: Assignment, error: string, nonRetryable: boolean): ClaimRequest {
  return request({ case: "fail", value: { taskId: a.taskId, attempt: a.attempt, leaseToken: a.leaseToken, error, nonRetryable } });
}

/** Hands an attempt back to PENDING without counting it. */
export function releaseRequest(a: Assignment, reason: string): ClaimRequest {
  return request({ case: "release", value: { taskId: a.taskId, attempt: a.attempt, leaseToken: a.leaseToken, reason: clip(reason) } });
}

/** How often to heartbeat on a welcomed stream. */
export function heartbeatIntervalMs(welcome: WorkerWelcome): number {
  const ms = welcome.heartbeatInterval === undefined ? 0 : durationMs(welcome.heartbeatInterval);
  return ms > 0 ? Math.max(ms, MIN_HEARTBEAT_MS) : DEFAULT_HEARTBEAT_MS;
}

// Names handlers can test `signal.reason.name` against, one per RevokeReason.
const REVOKE_ERROR_NAMES: Readonly<Record<RevokeReason, string>> = {
  [RevokeReason.UNSPECIFIED]: "RevokedError",
  [RevokeReason.CANCELLED]: "CancelledError",
  [RevokeReason.TIMED_OUT]: "TimeoutError",
  [RevokeReason.LEASE_LOST]: "LeaseLostError",
};

/** An Error with a given name, for abort reasons (no subclasses: handlers may run another SDK copy). */
export function namedError(name: string, message: string): Error {
  const error = new Error(message);
  error.name = name;
  return error;
}

/** The abort reason for a `revoked` notice: the server's message, named after the reason. */
export function revokeError(reason: RevokeReason, message: string): Error {
  return namedError(REVOKE_ERROR_NAMES[reason] ?? "RevokedError", message || "the server revoked the task");
}

function clip(text: string): string {
  return text.length > MAX_NOTE_CHARS ? `${text.slice(0, MAX_NOTE_CHARS - 1)}…` : text;
}
