/**
 * One lease this worker holds (an assigned attempt) and everything it still owes the server for it:
 * progress, checkpoints, and the one final report (complete, fail or release). It outlives the stream
 * it was assigned on, so after a reconnect the next stream can adopt it and get the unanswered
 * messages again, instead of the work being thrown away.
 */
import { durationMs } from "@bufbuild/protobuf/wkt";
import type { Checkpoint } from "../gen/taskwire/v1/task_pb.js";
import { ReportKind, type Assignment, type ClaimRequest, type Lease } from "../gen/taskwire/v1/worker_pb.js";
import { encodeCheckpoint, type CheckpointData } from "./checkpoint.js";
import {
  checkpointRequest,
  completeRequest,
  failRequest,
  leaseOf,
  namedError,
  progressRequest,
  releaseRequest,
  runKey,
} from "./claim-messages.js";
import type { Job } from "./define-job.js";
import { ProgressThrottle } from "./progress-throttle.js";
import { runAssignment, type AttemptResult } from "./run-assignment.js";
import type { TaskOutcome } from "./worker-types.js";

/** Where an attempt's messages go: the stream that holds its lease. */
export interface LeaseChannel {
  /** Sends if the stream is welcomed and open; false (nothing queued) otherwise. */
  send(request: ClaimRequest): boolean;
}

/** The final report, kept until a report_result answers it on some stream. */
interface PendingReport {
  readonly kind: ReportKind;
  readonly request: ClaimRequest;
  readonly outcome: "completed" | "failed" | "released";
  /** Sent on the current channel; reset when another stream adopts the lease. */
  sent: boolean;
}

interface CheckpointWaiter {
  readonly checkpoint: Checkpoint;
  resolve(): void;
  reject(error: Error): void;
}

/** A held lease and its handler. */
export class Attempt {
  readonly key: string;
  readonly controller = new AbortController();
  /** The handler was launched (task:started emitted). */
  started = false;
  /** The handler returned; until then it occupies one of the worker's slots. */
  settled = false;
  /** The lease's fate, once known; nothing is sent for it afterwards. */
  outcome: TaskOutcome | undefined;
  /** task:finished was emitted. */
  finishedEmitted = false;
  private report: PendingReport | undefined;
  private readonly progressThrottle: ProgressThrottle;
  private queued: CheckpointWaiter[] = [];
  /** The checkpoints covered by the one sent and not yet answered. */
  private inFlight: CheckpointWaiter[] | undefined;
  private timeout: NodeJS.Timeout | undefined;

  constructor(
    readonly assignment: Assignment,
    private channel: LeaseChannel,
  ) {
    this.key = runKey(assignment.taskId, assignment.attempt);
    this.progressThrottle = new ProgressThrottle(
      (fraction, message) => this.outcome === undefined && this.channel.send(progressRequest(assignment, fraction, message)),
    );
  }

  /** The lease, as hello.held names it. */
  get lease(): Lease {
    return leaseOf(this.assignment);
  }

  /** The handler is running and takes a slot. */
  get busy(): boolean {
    return this.started && !this.settled;
  }

  /** Assigned, still held, and its handler not started yet. */
  get waiting(): boolean {
    return !this.started && this.outcome === undefined && this.report === undefined;
  }

  /** Runs the handler; its result goes to settle(). */
  run(job: Job | undefined): Promise<AttemptResult> {
    this.started = true;
    const timeoutMs = this.assignment.timeout === undefined ? 0 : durationMs(this.assignment.timeout);
    if (timeoutMs > 0) {
      // The server enforces the timeout too (and revokes); aborting here lets the handler stop at once.
      this.timeout = setTimeout(() => this.abort(namedError("TimeoutError", `attempt timed out after ${timeoutMs} ms`)), timeoutMs).unref();
    }
    return runAssignment(job, this.assignment, {
      signal: this.controller.signal,
      progress: (fraction, message) => this.progress(fraction, message),
      checkpoint: (data) => this.checkpoint(data),
    });
  }

  /** Records the handler's result as the report to send, unless the lease already ended or is being released. */
  settle(result: AttemptResult): void {
    this.settled = true;
    clearTimeout(this.timeout);
    if (this.outcome !== undefined || this.report !== undefined) return;
    const a = this.assignment;
    this.report =
      result.kind === "completed"
        ? { kind: ReportKind.COMPLETE, outcome: "completed", sent: false, request: completeRequest(a, result.output) }
        : { kind: ReportKind.FAIL, outcome: "failed", sent: false, request: failRequest(a, result.error, result.nonRetryable) };
    this.pump();
  }

  /** Hands the lease back instead of reporting a result; a running handler is aborted with `abortReason` first. */
  release(reason: string, abortReason?: Error): void {
    if (this.outcome !== undefined || this.report !== undefined) return;
    // Abort before the release is queued: a handler's synchronous abort listener may still save a
    // checkpoint, and the release waits for it, so the next attempt resumes from there.
    if (abortReason !== undefined) this.abort(abortReason);
    this.progressThrottle.cancel();
    this.report = { kind: ReportKind.RELEASE, outcome: "released", sent: false, request: releaseRequest(this.assignment, reason) };
    this.pump();
  }

  /** Another stream adopted the lease: what the old one left unanswered is sent again there. */
  adopt(channel: LeaseChannel): void {
    this.channel = channel;
    if (this.inFlight !== undefined) this.queued = [...this.inFlight, ...this.queued];
    this.inFlight = undefined;
    if (this.report !== undefined) this.report.sent = false;
    this.pump();
  }

  /**
   * Sends what is owed on the holding stream: checkpoints one at a time (answers cannot be told
   * apart otherwise, and the server would not keep them in order), then the final report once no
   * checkpoint is outstanding (a retry must see the last one), preceded by the latest progress.
   */
  pump(): void {
    if (this.outcome !== undefined) return;
    if (this.inFlight === undefined && this.queued.length > 0) {
      // Only the newest is sent: it supersedes the ones queued before it, whose callers learn with it.
      const batch = this.queued;
      if (this.channel.send(checkpointRequest(this.assignment, batch[batch.length - 1]!.checkpoint))) {
        this.inFlight = batch;
        this.queued = [];
      }
    }
    const report = this.report;
    if (report === undefined) {
      this.progressThrottle.resume();
      return;
    }
    if (report.sent || this.inFlight !== undefined || this.queued.length > 0) return;
    if (report.kind !== ReportKind.RELEASE) this.progressThrottle.flush();
    report.sent = this.channel.send(report.request);
  }

  /**
   * Applies a report_result; returns the outcome when it decided the lease's fate. A rejected final
   * report means the server no longer counts this attempt as ours: "revoked".
   */
  answer(kind: ReportKind, accepted: boolean, error: string): TaskOutcome | undefined {
    if (this.outcome !== undefined) return undefined;
    // UNSPECIFIED (a server older than `kind`) is unambiguous too: a final report is never sent while a checkpoint is out.
    if (kind === ReportKind.CHECKPOINT || (kind === ReportKind.UNSPECIFIED && this.inFlight !== undefined)) {
      const batch = this.inFlight ?? [];
      this.inFlight = undefined;
      const rejection = accepted ? undefined : new Error(error || "the server rejected the checkpoint");
      for (const waiter of batch) {
        if (rejection === undefined) waiter.resolve();
        else waiter.reject(rejection);
      }
      this.pump();
      return undefined;
    }
    const report = this.report;
    if (report === undefined || !report.sent || (kind !== ReportKind.UNSPECIFIED && kind !== report.kind)) return undefined;
    const outcome: TaskOutcome = accepted ? report.outcome : "revoked";
    this.end(outcome);
    return outcome;
  }

  /** Ends the lease with no further reports: aborts the handler with `reason`, drops what is owed, rejects waiting checkpoints. */
  end(outcome: TaskOutcome, reason?: Error): void {
    if (this.outcome !== undefined) return;
    this.outcome = outcome;
    if (reason !== undefined) this.abort(reason);
    clearTimeout(this.timeout);
    this.progressThrottle.cancel();
    this.report = undefined;
    const waiting = [...(this.inFlight ?? []), ...this.queued];
    this.inFlight = undefined;
    this.queued = [];
    if (waiting.length === 0) return; // the usual case: no Error to build (capturing its stack is costly)
    const rejection = reason ?? new Error(`the attempt ended (${outcome}) before its checkpoint was saved`);
    for (const waiter of waiting) waiter.reject(rejection);
  }

  private progress(fraction: number, message = ""): void {
    // Fire-and-forget means it never throws into the handler: reporting must not fail the work. The
    // server refuses values outside 0..1, so they are clamped here, and NaN is dropped.
    if (typeof fraction !== "number" || Number.isNaN(fraction)) return;
    if (this.outcome !== undefined || this.report !== undefined) return; // too late to matter
    this.progressThrottle.update(Math.min(1, Math.max(0, fraction)), String(message));
  }

  private checkpoint(data: CheckpointData): Promise<void> {
    if (this.outcome !== undefined || this.report !== undefined) {
      return Promise.reject(this.controller.signal.aborted ? this.controller.signal.reason : new Error("the attempt has already finished"));
    }
    let checkpoint: Checkpoint;
    try {
      checkpoint = encodeCheckpoint(data);
    } catch (error) {
      return Promise.reject(error);
    }
    const saved = new Promise<void>((resolve, reject) => {
      this.queued.push({ checkpoint, resolve, reject });
    });
    // Marked handled: a fire-and-forget checkpoint rejected at revoke time must not crash the process
    // with an unhandled rejection; a caller that awaits still gets the error.
    saved.catch(() => {});
    this.pump();
    return saved;
  }

  private abort(reason: Error): void {
    if (!this.controller.signal.aborted) this.controller.abort(reason);
  }
}
