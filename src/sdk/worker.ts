/**
 * A worker: one WorkerService.Claim stream at a time that receives assignments for the worker's job
 * types, runs their handlers (never more than `concurrency` at once) and reports each outcome.
 *
 * Leases outlive streams. When a stream breaks, handlers keep running and their reports wait; the
 * next stream's hello names every lease still held, and its welcome says which the server adopted:
 * those get their unanswered reports again, the others are aborted and dropped. A lease's fate is
 * settled only by a report_result, a `revoked`, or non-adoption, so no result is silently lost.
 *
 * Phases: idle -> running -> draining (stop(): drain sent, handlers finish; after the grace period
 * the rest are released) -> closing (half-close, wait for the server to end the stream) -> stopped.
 */
import { EventEmitter } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError, createClient as createConnectClient, type Client } from "@connectrpc/connect";
import { backoffDelayMs, type BackoffPolicy } from "../core/backoff.js";
import { WorkerService, type Assignment, type ClaimResponse, type ReportResult, type TaskRevoked, type WorkerWelcome } from "../gen/taskwire/v1/worker_pb.js";
import { Attempt } from "./attempt.js";
import { drainRequest, heartbeatIntervalMs, helloRequest, namedError, revokeError, runKey } from "./claim-messages.js";
import { ClaimSession } from "./claim-session.js";
import { FifoQueue } from "../core/fifo-queue.js";
import type { Job } from "./define-job.js";
import { resolveTransport, type OwnedTransport } from "./transport.js";
import type { StopOptions, TaskOutcome, Worker, WorkerEvents, WorkerLogger, WorkerOptions } from "./worker-types.js";

export type { StopOptions, TaskOutcome, Worker, WorkerEvents, WorkerLogger, WorkerOptions } from "./worker-types.js";

/** stop()'s default time for running handlers to finish and report. */
const DEFAULT_GRACE_MS = 10_000;
/** How long stop() waits for the answers to its releases (and reports still out) after the grace period. */
const RELEASE_WAIT_MS = 2_000;
/** How long stop() waits for the server to end the stream after the half-close, before cutting it. */
const CLOSE_GRACE_MS = 1_000;
/** Why a draining worker hands tasks back, for the task history. */
const RELEASE_REASON = "worker draining";
/** Keepalive PINGs on the worker's own connection: a server host that vanished is noticed in ~45 s (30 s + 15 s ping timeout). */
const PING_INTERVAL_MS = 30_000;
/** The server's bound on a stream's credits (WorkerHello.credits). */
const MAX_CREDITS = 1_000;
/** Errors that another try cannot fix (wrong job type names, no permission, not a Taskwire server). */
const PERMANENT_CODES: ReadonlySet<Code> = new Set([Code.InvalidArgument, Code.NotFound, Code.PermissionDenied, Code.Unauthenticated, Code.Unimplemented]);

/** Creates a worker; nothing connects until start(). */
export function createWorker(options: WorkerOptions): Worker {
  const jobs = new Map<string, Job>();
  for (const job of options.jobs) {
    if (jobs.has(job.name)) throw new TypeError(`taskwire worker: job type ${JSON.stringify(job.name)} is listed twice`);
    jobs.set(job.name, job);
  }
  if (jobs.size === 0 || jobs.size > 100) throw new RangeError(`taskwire worker: jobs must name 1 to 100 job types, not ${jobs.size}`);
  const { concurrency, prefetch = 0 } = options;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > MAX_CREDITS) {
    throw new RangeError(`taskwire worker: concurrency must be an integer from 1 to ${MAX_CREDITS}, not ${concurrency}`);
  }
  if (!Number.isInteger(prefetch) || prefetch < 0 || concurrency + prefetch > MAX_CREDITS) {
    throw new RangeError(`taskwire worker: prefetch must be an integer from 0 to ${MAX_CREDITS - concurrency} (concurrency + prefetch at most ${MAX_CREDITS}), not ${prefetch}`);
  }
  const backoff: BackoffPolicy = {
    baseMs: options.reconnect?.initialDelayMs ?? 100,
    capMs: options.reconnect?.maxDelayMs ?? 5_000,
  };
  return new ClaimWorker(options, jobs, concurrency, concurrency + prefetch, backoff, options.logger ?? consoleLogger);
}

type Phase = "idle" | "running" | "draining" | "closing" | "stopped";

class ClaimWorker implements Worker {
  workerId: string | undefined;
  private readonly owned: OwnedTransport;
  private readonly client: Client<typeof WorkerService>;
  // Untyped inside: on/once/emit below are the typed surface (EventEmitter's generic overloads do not
  // accept a listener typed by a generic event name).
  private readonly events = new EventEmitter();
  private phase: Phase = "idle";
  private session: ClaimSession | undefined;
  /**
   * Every lease held, in assignment order, plus ended ones whose handler has not returned yet (they
   * still take a slot). Not-yet-started ones wait here for a slot: the server may send more than the
   * free slots, since it returns a revoked attempt's credit before its handler returns.
   */
  private readonly attempts = new Map<string, Attempt>();
  /** Assigned attempts not started yet, oldest first (entries that ended meanwhile are skipped). */
  private readonly ready = new FifoQueue<Attempt>();
  /** Handlers running now. */
  private running = 0;
  /** Wakes the reconnect backoff when stop() closes the worker. */
  private readonly lifetime = new AbortController();
  private loopDone: Promise<void> = Promise.resolve();
  private started: Promise<void> | undefined;
  private settleStart: { resolve(): void; reject(error: unknown): void } | undefined;
  private stopped: Promise<void> | undefined;
  /** Set while stop() waits; called whenever a lease or handler may have finished. */
  private onChange: (() => void) | undefined;

  constructor(
    private readonly options: WorkerOptions,
    private readonly jobs: ReadonlyMap<string, Job>,
    private readonly concurrency: number,
    private readonly credits: number,
    private readonly backoff: BackoffPolicy,
    private readonly logger: WorkerLogger,
  ) {
    this.owned = resolveTransport(options, { pingIntervalMs: PING_INTERVAL_MS });
    this.client = createConnectClient(WorkerService, this.owned.transport);
  }

  start(): Promise<void> {
    if (this.started !== undefined) return this.started;
    if (this.phase !== "idle") return Promise.reject(new Error("taskwire worker: stopped workers cannot be restarted; create a new one"));
    this.phase = "running";
    this.started = new Promise<void>((resolve, reject) => (this.settleStart = { resolve, reject }));
    this.loopDone = this.loop().catch((error: unknown) => {
      // The loop handles stream errors itself; reaching this is a bug, and a silent dead worker is worse than a loud one.
      this.logger.error({ err: error }, "taskwire worker: claim loop crashed");
      this.settleStart?.reject(error);
    });
    return this.started;
  }

  stop(options: StopOptions = {}): Promise<void> {
    const graceMs = options.graceMs ?? DEFAULT_GRACE_MS;
    if (!(graceMs >= 0)) return Promise.reject(new RangeError(`taskwire worker: graceMs must be a number >= 0, not ${graceMs}`));
    this.stopped ??= this.shutdown(graceMs);
    return this.stopped;
  }

  on<E extends keyof WorkerEvents>(event: E, listener: (...args: WorkerEvents[E]) => void): () => void {
    this.events.on(event, listener);
    return () => this.events.off(event, listener);
  }

  once<E extends keyof WorkerEvents>(event: E, listener: (...args: WorkerEvents[E]) => void): () => void {
    this.events.once(event, listener);
    return () => this.events.off(event, listener);
  }

  /** While running, or draining with leases still owed an answer: keep a stream open, reconnecting with backoff. */
  private wantsStream(): boolean {
    return this.phase === "running" || (this.phase === "draining" && this.holdsLeases());
  }

  private holdsLeases(): boolean {
    for (const attempt of this.attempts.values()) if (attempt.outcome === undefined) return true;
    return false;
  }

  private async loop(): Promise<void> {
    let failures = 0;
    let everWelcomed = false;
    while (this.wantsStream()) {
      const session = this.openSession();
      let error: unknown;
      try {
        for await (const response of this.client.claim(session.requests, { signal: session.call.signal })) {
          this.onResponse(session, response);
        }
      } catch (caught) {
        error = caught;
      }
      everWelcomed ||= session.welcomed;
      this.endSession(session, error);
      if (!this.wantsStream()) break;

      const code = error === undefined ? undefined : ConnectError.from(error).code;
      if (!everWelcomed && code !== undefined && PERMANENT_CODES.has(code)) {
        // Before the first welcome this is a configuration error: retrying would hide it.
        this.logger.error({ err: error }, "taskwire worker: the server refused the worker; not retrying");
        this.settleStart?.reject(error);
        this.phase = "stopped";
        this.owned.close();
        return;
      }
      failures = session.welcomed ? 1 : failures + 1;
      const delayMs = backoffDelayMs(this.backoff, failures);
      // A refusal after a welcome (e.g. a job type deleted meanwhile) is retried too, but said louder.
      const level = code !== undefined && PERMANENT_CODES.has(code) ? "error" : "warn";
      this.logger[level]({ err: error, delayMs, failures }, `taskwire worker: claim stream ${error === undefined ? "ended" : "failed"}; reconnecting`);
      try {
        await sleep(delayMs, undefined, { signal: this.lifetime.signal });
      } catch (error) {
        // Only stop() aborts this sleep; the loop condition then ends the loop.
        if (!this.lifetime.signal.aborted) throw error;
      }
    }
  }

  private openSession(): ClaimSession {
    const held = [...this.attempts.values()].filter((attempt) => attempt.outcome === undefined);
    const session = new ClaimSession(new Set(held.map((attempt) => attempt.key)));
    // After a reconnect, keep the id the server gave us, so the task history shows one worker.
    const workerId = this.options.workerId ?? this.workerId ?? "";
    session.requests.push(helloRequest(workerId, [...this.jobs.keys()], this.credits, held.map((attempt) => attempt.lease)));
    this.session = session;
    return session;
  }

  private onResponse(session: ClaimSession, response: ClaimResponse): void {
    const message = response.message;
    switch (message.case) {
      case "welcome":
        return this.welcome(session, message.value);
      case "assignments":
        for (const assignment of message.value.assignments) this.accept(session, assignment);
        return this.pumpSlots();
      case "revoked":
        return this.revoke(message.value);
      case "reportResult":
        return this.answer(message.value);
      case "reportResults":
        for (const result of message.value.results) this.answer(result);
        return;
      case undefined:
        // A message kind added to the contract after this SDK: nothing to do with it.
        return;
    }
  }

  private welcome(session: ClaimSession, welcome: WorkerWelcome): void {
    session.welcome(heartbeatIntervalMs(welcome));
    this.workerId = welcome.workerId;
    // Drain first, so the server stops assigning before it sees the reports that free credits.
    if (this.phase === "draining") session.send(drainRequest());
    const adopted = new Set(welcome.adopted.map((lease) => runKey(lease.taskId, lease.attempt)));
    let lost = 0;
    for (const key of session.held) {
      const attempt = this.attempts.get(key);
      if (attempt === undefined || attempt.outcome !== undefined) continue;
      if (adopted.has(key)) {
        attempt.adopt(session);
      } else {
        lost += 1;
        this.endAttempt(attempt, "revoked", namedError("LeaseLostError", "lease lost after reconnect"));
      }
    }
    this.logger.info({ workerId: this.workerId, adopted: adopted.size, lost }, "taskwire worker: connected");
    this.emit("connected", { workerId: this.workerId });
    this.settleStart?.resolve();
    this.pumpSlots();
  }

  private accept(session: ClaimSession, assignment: Assignment): void {
    const key = runKey(assignment.taskId, assignment.attempt);
    const known = this.attempts.get(key);
    if (known !== undefined && known.outcome === undefined) {
      this.logger.warn({ taskId: assignment.taskId, attempt: assignment.attempt }, "taskwire worker: the server assigned an attempt already held; ignored");
      return;
    }
    const attempt = new Attempt(assignment, session);
    this.attempts.set(key, attempt);
    // Raced with our drain: hand it straight back rather than let it sit until its lease expires.
    if (this.phase !== "running") attempt.release(RELEASE_REASON);
    else this.ready.push(attempt);
  }

  /** Starts waiting attempts, in assignment order, while slots are free. */
  private pumpSlots(): void {
    if (this.phase !== "running") return;
    while (this.running < this.concurrency) {
      const attempt = this.ready.shift();
      if (attempt === undefined) return;
      // Ended (revoked, released) while it waited: it never takes a slot.
      if (attempt.waiting && this.attempts.get(attempt.key) === attempt) this.startRun(attempt);
    }
  }

  private startRun(attempt: Attempt): void {
    const { taskId, attempt: number } = attempt.assignment;
    this.running += 1;
    this.emit("task:started", { taskId, attempt: number });
    attempt
      .run(this.jobs.get(attempt.assignment.jobType))
      .then((result) => {
        this.running -= 1;
        if (result.kind === "failed" && attempt.outcome === undefined) {
          this.logger.warn({ taskId, attempt: number, error: result.error, nonRetryable: result.nonRetryable }, "taskwire worker: task failed");
        }
        attempt.settle(result);
        this.afterChange(attempt);
      })
      .catch((error: unknown) => this.logger.error({ err: error, taskId, attempt: number }, "taskwire worker: settling a task failed"));
  }

  private revoke(notice: TaskRevoked): void {
    const attempt = this.attempts.get(runKey(notice.taskId, notice.attempt));
    if (attempt === undefined || attempt.outcome !== undefined) return;
    this.logger.info({ taskId: notice.taskId, attempt: notice.attempt, reason: notice.reason, message: notice.message }, "taskwire worker: task revoked");
    this.endAttempt(attempt, "revoked", revokeError(notice.reason, notice.message));
  }

  private answer(result: ReportResult): void {
    const { taskId, attempt: number, accepted, error, kind } = result;
    if (!accepted) this.logger.warn({ taskId, attempt: number, kind, error }, "taskwire worker: the server rejected a report");
    const attempt = this.attempts.get(runKey(taskId, number));
    if (attempt === undefined) return;
    const outcome = attempt.answer(kind, accepted, error);
    if (outcome === undefined) return;
    if (outcome === "released" && attempt.started) this.emit("task:released", { taskId, attempt: number });
    this.afterChange(attempt);
  }

  private endAttempt(attempt: Attempt, outcome: TaskOutcome, reason: Error): void {
    attempt.end(outcome, reason);
    this.afterChange(attempt);
  }

  /** Forgets a lease once it is done, refills the slots, and wakes stop(). */
  private afterChange(attempt: Attempt): void {
    if (attempt.outcome !== undefined && !attempt.busy) this.forget(attempt);
    this.pumpSlots();
    this.onChange?.();
  }

  /** Drops a finished lease; task:finished is emitted exactly once per started attempt. */
  private forget(attempt: Attempt): void {
    if (this.attempts.get(attempt.key) === attempt) this.attempts.delete(attempt.key);
    if (!attempt.started || attempt.finishedEmitted) return;
    attempt.finishedEmitted = true;
    const { taskId, attempt: number } = attempt.assignment;
    this.emit("task:finished", { taskId, attempt: number, outcome: attempt.outcome ?? "revoked" });
  }

  private endSession(session: ClaimSession, error: unknown): void {
    session.end();
    if (this.session === session) this.session = undefined;
    // Leases stay: handlers keep running and their reports wait for the next stream to adopt them.
    this.onChange?.();
    if (session.welcomed) this.emit("disconnected", error === undefined ? {} : { error });
  }

  private async shutdown(graceMs: number): Promise<void> {
    if (this.phase === "idle" || this.phase === "stopped") {
      this.phase = "stopped";
      this.owned.close();
      return;
    }
    this.phase = "draining";
    this.settleStart?.resolve(); // start() must not hang when stopped before a welcome
    this.session?.send(drainRequest());
    // Never started: hand them back at once, so another worker can run them.
    for (const attempt of this.attempts.values()) if (attempt.waiting) attempt.release(RELEASE_REASON);

    if (!(await this.waitFor(() => this.attempts.size === 0, graceMs))) {
      const late = [...this.attempts.values()].filter((attempt) => attempt.busy && attempt.outcome === undefined);
      if (late.length > 0) this.logger.warn({ running: late.length }, "taskwire worker: handlers still running after the grace period; releasing their tasks");
      for (const attempt of late) attempt.release(RELEASE_REASON, new Error("worker stopping"));
      await this.waitFor(() => !this.holdsLeases(), RELEASE_WAIT_MS);
    }

    this.phase = "closing";
    this.lifetime.abort(); // wakes a reconnect backoff
    this.session?.halfClose(); // the server answers what it has, then ends the stream
    if (!(await settlesWithin(this.loopDone, CLOSE_GRACE_MS))) this.session?.call.abort();
    await this.loopDone;
    // Whatever is left was not answered in time: its fate is the server's now.
    for (const attempt of [...this.attempts.values()]) {
      attempt.end("revoked", new Error("worker stopped"));
      this.forget(attempt);
    }
    this.phase = "stopped";
    this.owned.close();
  }

  /** True once `done()` holds, false after `ms`; re-checked on every lease or stream change. */
  private async waitFor(done: () => boolean, ms: number): Promise<boolean> {
    if (done()) return true;
    const reached = new Promise<void>((resolve) => {
      this.onChange = () => {
        if (done()) resolve();
      };
    });
    try {
      return await settlesWithin(reached, ms);
    } finally {
      this.onChange = undefined;
    }
  }

  private emit<E extends keyof WorkerEvents>(event: E, ...args: WorkerEvents[E]): void {
    try {
      this.events.emit(event, ...args);
    } catch (error) {
      // A throwing listener must not break the stream loop or leave a task unreported.
      this.logger.error({ err: error, event }, "taskwire worker: an event listener threw");
    }
  }
}

/** True if `promise` settles within `ms`; the timer is cleared either way, so none outlives stop(). */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(resolve, ms, false)));
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const consoleLogger: WorkerLogger = {
  info() {},
  warn: (fields, message) => console.warn(message, fields),
  error: (fields, message) => console.error(message, fields),
};
