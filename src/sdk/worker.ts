/**
 * A worker: one WorkerService.Claim stream that receives assignments for the worker's job types,
 * runs their handlers (never more than `concurrency` at once) and reports each outcome on the same
 * stream. It reconnects with backoff when the stream breaks, and stops cleanly on request.
 *
 * Who reports what: only the attempt's holder on the stream it was assigned on. When the server
 * revokes an attempt, or that stream ends, the server has already taken the attempt back, so the
 * handler's signal is aborted and its eventual result is dropped (a report would be rejected).
 */
import { EventEmitter } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import { create } from "@bufbuild/protobuf";
import { durationMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient as createConnectClient, type Client } from "@connectrpc/connect";
import { backoffDelayMs, type BackoffPolicy } from "../core/backoff.js";
import {
  ClaimRequestSchema,
  WorkerService,
  type Assignment,
  type ClaimRequest,
  type ClaimResponse,
  type TaskRevoked,
} from "../gen/taskwire/v1/worker_pb.js";
import type { Job } from "./define-job.js";
import { createPushQueue, type PushQueue } from "./push-queue.js";
import { runAssignment, type AttemptResult } from "./run-assignment.js";
import { resolveTransport, type ConnectionOptions, type OwnedTransport } from "./transport.js";

/** How long stop() lets in-flight handlers settle (and their reports be answered) before closing the stream. */
const STOP_GRACE_MS = 5_000;
/** How long stop() waits for the server to end the stream after the half-close, before cutting it. */
const CLOSE_GRACE_MS = 1_000;
/** Keepalive PINGs on the worker's own connection: a server host that vanished is noticed in ~45 s (30 s + 15 s ping timeout). */
const PING_INTERVAL_MS = 30_000;
/** Errors that another try cannot fix (wrong job type names, no permission, not a Taskwire server). */
const PERMANENT_CODES: ReadonlySet<Code> = new Set([Code.InvalidArgument, Code.NotFound, Code.PermissionDenied, Code.Unauthenticated, Code.Unimplemented]);

/** Where the worker logs; pino's (fields, message) order, which console also accepts. */
export interface WorkerLogger {
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}

/** Worker settings. */
export type WorkerOptions = ConnectionOptions & {
  /** The job types this worker runs (1 to 100, distinct names); each must be registered. */
  jobs: readonly Job[];
  /** Handlers run at once, 1 to 1000; sent to the server as the stream's credits. */
  concurrency: number;
  /** Names the worker in task history; unset: the server makes one up (kept across reconnects). */
  workerId?: string;
  /** Default: warnings and errors to the console, info dropped. */
  logger?: WorkerLogger;
  /** Reconnect backoff with jitter: the delay doubles from initialDelayMs (100) up to maxDelayMs (5000). */
  reconnect?: { initialDelayMs?: number; maxDelayMs?: number };
};

/**
 * How a started attempt ended for this worker: its outcome was reported as completed or failed, or
 * it was "revoked": taken back (server revoke, lost stream, or released by stop()) and not reported.
 */
export type TaskOutcome = "completed" | "failed" | "revoked";

/** Typed events, so tests can wait for them instead of sleeping. */
export interface WorkerEvents {
  /** A stream was welcomed (the first connection and every reconnection). */
  connected: [{ workerId: string }];
  "task:started": [{ taskId: string; attempt: number }];
  /** Exactly once per task:started. */
  "task:finished": [{ taskId: string; attempt: number; outcome: TaskOutcome }];
  /** A welcomed stream ended; `error` is unset when it ended cleanly (e.g. by stop()). */
  disconnected: [{ error?: unknown }];
}

/** A running worker. */
export interface Worker {
  /**
   * Connects; resolves when the server welcomed the stream. Transient failures (server not up yet)
   * are retried; a permanent one (e.g. INVALID_ARGUMENT for an unregistered job type) rejects and
   * stops the worker. Resolves without connecting if stop() is called first.
   */
  start(): Promise<void>;
  /** Takes no new work, aborts running handlers, lets them settle (up to ~5 s), closes the stream and the connection. */
  stop(): Promise<void>;
  /** Subscribes to an event; returns the unsubscribe function. */
  on<E extends keyof WorkerEvents>(event: E, listener: (...args: WorkerEvents[E]) => void): () => void;
  /** Subscribes to the next occurrence of an event; returns the unsubscribe function. */
  once<E extends keyof WorkerEvents>(event: E, listener: (...args: WorkerEvents[E]) => void): () => void;
  /** The id the server knows this worker by, once welcomed. */
  readonly workerId: string | undefined;
}

/** Creates a worker; nothing connects until start(). */
export function createWorker(options: WorkerOptions): Worker {
  const jobs = new Map<string, Job>();
  for (const job of options.jobs) {
    if (jobs.has(job.name)) throw new TypeError(`taskwire worker: job type ${JSON.stringify(job.name)} is listed twice`);
    jobs.set(job.name, job);
  }
  if (jobs.size === 0 || jobs.size > 100) throw new RangeError(`taskwire worker: jobs must name 1 to 100 job types, not ${jobs.size}`);
  const { concurrency } = options;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 1000) {
    throw new RangeError(`taskwire worker: concurrency must be an integer from 1 to 1000, not ${concurrency}`);
  }
  const backoff: BackoffPolicy = {
    baseMs: options.reconnect?.initialDelayMs ?? 100,
    capMs: options.reconnect?.maxDelayMs ?? 5_000,
  };
  return new ClaimWorker(options, jobs, concurrency, backoff, options.logger ?? consoleLogger);
}

/** An assignment's handler while it runs. */
interface Run {
  readonly key: string;
  readonly assignment: Assignment;
  /** The stream it was assigned on: the only one its outcome may be reported on. */
  readonly session: Session;
  readonly controller: AbortController;
  /** Why the signal was aborted first; decides whether the outcome is still reported. */
  abortedBy: "revoked" | "disconnected" | "timeout" | "stopping" | undefined;
}

/** One Claim stream. */
interface Session {
  readonly requests: PushQueue<ClaimRequest>;
  /** Cuts the call; used only when the stream must end without the server's cooperation. */
  readonly call: AbortController;
  welcomed: boolean;
  ended: boolean;
  /** Keys of reports sent and not yet answered by report_result. */
  readonly unanswered: Set<string>;
}

type Phase = "idle" | "running" | "stopping" | "stopped";

class ClaimWorker implements Worker {
  workerId: string | undefined;
  private readonly owned: OwnedTransport;
  private readonly client: Client<typeof WorkerService>;
  // Untyped inside: on/once/emit below are the typed surface (EventEmitter's generic overloads do not
  // accept a listener typed by a generic event name).
  private readonly events = new EventEmitter();
  private phase: Phase = "idle";
  private session: Session | undefined;
  /** Started handlers, by task id and attempt; they hold the worker's slots until they settle. */
  private readonly running = new Map<string, Run>();
  /**
   * Assignments waiting for a slot. The server frees a credit as soon as it revokes an attempt, and
   * a new stream starts with full credits, while those handlers may not have returned yet: the
   * server can then send more than the free slots, and the excess waits here.
   */
  private backlog: { assignment: Assignment; session: Session }[] = [];
  /** Wakes the reconnect backoff when stop() is called. */
  private readonly lifetime = new AbortController();
  private loopDone: Promise<void> = Promise.resolve();
  private started: Promise<void> | undefined;
  private settleStart: { resolve(): void; reject(error: unknown): void } | undefined;
  private stopped: Promise<void> | undefined;
  /** Set while stop() waits for handlers and reports; called whenever either count may have dropped. */
  private onIdle: (() => void) | undefined;

  constructor(
    private readonly options: WorkerOptions,
    private readonly jobs: ReadonlyMap<string, Job>,
    private readonly concurrency: number,
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

  stop(): Promise<void> {
    this.stopped ??= this.shutdown();
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

  /** Keeps one stream open: connect, serve until it ends, back off, reconnect. */
  private async loop(): Promise<void> {
    let failures = 0;
    let everWelcomed = false;
    while (this.phase === "running") {
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
      if (this.phase !== "running") break;

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

  private openSession(): Session {
    const session: Session = {
      requests: createPushQueue<ClaimRequest>(),
      call: new AbortController(),
      welcomed: false,
      ended: false,
      unanswered: new Set(),
    };
    session.requests.push(
      create(ClaimRequestSchema, {
        message: {
          case: "hello",
          value: {
            // After a reconnect, keep the id the server gave us, so the task history shows one worker.
            workerId: this.options.workerId ?? this.workerId ?? "",
            jobTypes: [...this.jobs.keys()],
            credits: this.concurrency,
          },
        },
      }),
    );
    this.session = session;
    return session;
  }

  private onResponse(session: Session, response: ClaimResponse): void {
    const message = response.message;
    switch (message.case) {
      case "welcome":
        session.welcomed = true;
        this.workerId = message.value.workerId;
        this.logger.info({ workerId: this.workerId }, "taskwire worker: connected");
        this.emit("connected", { workerId: this.workerId });
        this.settleStart?.resolve();
        return;
      case "assignments":
        for (const assignment of message.value.assignments) this.accept(session, assignment);
        this.pump();
        return;
      case "revoked":
        this.revoke(message.value);
        return;
      case "reportResult": {
        const { taskId, attempt, accepted, error } = message.value;
        session.unanswered.delete(runKey(taskId, attempt));
        if (!accepted) this.logger.warn({ taskId, attempt, error }, "taskwire worker: the server rejected a report");
        this.checkIdle();
        return;
      }
      case undefined:
        // A message kind added to the contract after this SDK: nothing to do with it.
        return;
    }
  }

  private accept(session: Session, assignment: Assignment): void {
    // While stopping, take no new work: the half-close gives it back to the server.
    if (this.phase !== "running") return;
    this.backlog.push({ assignment, session });
  }

  /** Starts waiting assignments while slots are free. */
  private pump(): void {
    while (this.phase === "running" && this.running.size < this.concurrency) {
      const next = this.backlog.shift();
      if (next === undefined) return;
      if (next.session.ended) continue; // the server took it back when that stream ended
      this.startRun(next.session, next.assignment);
    }
  }

  private startRun(session: Session, assignment: Assignment): void {
    const { taskId, attempt } = assignment;
    const key = runKey(taskId, attempt);
    if (this.running.has(key)) {
      this.logger.warn({ taskId, attempt }, "taskwire worker: the server assigned an attempt that is already running; ignored");
      return;
    }
    const run: Run = { key, assignment, session, controller: new AbortController(), abortedBy: undefined };
    this.running.set(key, run);
    // The server enforces the timeout; aborting here too lets the handler stop instead of working for nothing.
    const timeoutMs = assignment.timeout === undefined ? 0 : durationMs(assignment.timeout);
    const timer =
      timeoutMs > 0 ? setTimeout(() => this.abort(run, "timeout", new Error(`attempt timed out after ${timeoutMs} ms`)), timeoutMs).unref() : undefined;
    this.emit("task:started", { taskId, attempt });
    runAssignment(this.jobs.get(assignment.jobType), assignment, run.controller.signal)
      .then((result) => {
        clearTimeout(timer);
        this.settle(run, result);
      })
      .catch((error: unknown) => this.logger.error({ err: error, taskId, attempt }, "taskwire worker: settling a task failed"));
  }

  /** Decides what to report for a settled handler, reports it, and frees its slot. */
  private settle(run: Run, result: AttemptResult): void {
    this.running.delete(run.key);
    const { taskId, attempt, leaseToken } = run.assignment;
    let report: ClaimRequest | undefined;
    if (run.abortedBy === "revoked" || run.abortedBy === "disconnected" || run.session.ended) {
      // The server already took the attempt back; a report would only be rejected.
      report = undefined;
    } else if (result.kind === "failed" && run.abortedBy === "stopping") {
      // Released on shutdown, not a failure of the task: the half-close returns it to the server.
      report = undefined;
    } else if (result.kind === "completed") {
      report = create(ClaimRequestSchema, { message: { case: "complete", value: { taskId, attempt, leaseToken, output: result.output } } });
    } else {
      report = create(ClaimRequestSchema, {
        message: { case: "fail", value: { taskId, attempt, leaseToken, error: result.error, nonRetryable: result.nonRetryable } },
      });
      this.logger.warn({ taskId, attempt, error: result.error, nonRetryable: result.nonRetryable }, "taskwire worker: task failed");
    }
    let outcome: TaskOutcome = "revoked";
    if (report !== undefined && run.session.requests.push(report)) {
      run.session.unanswered.add(run.key);
      outcome = result.kind;
    }
    this.emit("task:finished", { taskId, attempt, outcome });
    this.pump();
    this.checkIdle();
  }

  private revoke(notice: TaskRevoked): void {
    const key = runKey(notice.taskId, notice.attempt);
    const reason = new Error(notice.message || "the server revoked the task");
    const run = this.running.get(key);
    if (run !== undefined) {
      this.logger.info({ taskId: notice.taskId, attempt: notice.attempt, message: notice.message }, "taskwire worker: task revoked");
      this.abort(run, "revoked", reason);
      // Revoked wins over an earlier abort (e.g. a timeout): its outcome must not be reported either way.
      run.abortedBy = "revoked";
      return;
    }
    // Not started yet: drop it; its credit is already back on the server.
    this.backlog = this.backlog.filter((waiting) => runKey(waiting.assignment.taskId, waiting.assignment.attempt) !== key);
  }

  private abort(run: Run, by: NonNullable<Run["abortedBy"]>, reason: Error): void {
    if (run.controller.signal.aborted) return;
    run.abortedBy = by;
    run.controller.abort(reason);
  }

  private endSession(session: Session, error: unknown): void {
    session.ended = true;
    session.requests.close();
    session.call.abort(); // releases the HTTP/2 stream if the call is still half-open
    session.unanswered.clear();
    if (this.session === session) this.session = undefined;
    // The server re-queues whatever this stream held: stop the work, drop the results.
    for (const run of this.running.values()) {
      if (run.session === session) this.abort(run, "disconnected", new Error("connection to the server lost; the task was handed back"));
    }
    this.backlog = this.backlog.filter((waiting) => waiting.session !== session);
    this.checkIdle();
    if (session.welcomed) {
      this.emit("disconnected", error === undefined ? {} : { error });
    }
  }

  private async shutdown(): Promise<void> {
    if (this.phase === "idle" || this.phase === "stopped") {
      this.phase = "stopped";
      this.owned.close();
      return;
    }
    this.phase = "stopping";
    this.settleStart?.resolve(); // start() must not hang when stopped before a welcome
    this.backlog = []; // never started: the half-close gives them back
    for (const run of this.running.values()) this.abort(run, "stopping", new Error("worker stopping"));

    // Let handlers settle and their reports be answered, so finished work is recorded as such
    // rather than "lost" when the stream closes.
    const idle = new Promise<void>((resolve) => (this.onIdle = resolve));
    this.checkIdle();
    const drained = await settlesWithin(idle, STOP_GRACE_MS);
    this.onIdle = undefined;
    if (!drained) {
      this.logger.warn({ running: this.running.size }, "taskwire worker: handlers still running after the stop grace period; their tasks go back to the server");
    }

    // Half-close: the server ends its side, and treats attempts still held as lost (retried).
    this.session?.requests.close();
    this.lifetime.abort(); // wakes a reconnect backoff
    if (!(await settlesWithin(this.loopDone, CLOSE_GRACE_MS))) this.session?.call.abort();
    await this.loopDone;
    this.phase = "stopped";
    this.owned.close();
  }

  private checkIdle(): void {
    if (this.onIdle !== undefined && this.running.size === 0 && (this.session?.unanswered.size ?? 0) === 0) this.onIdle();
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

function runKey(taskId: string, attempt: number): string {
  return `${taskId}#${attempt}`;
}

const consoleLogger: WorkerLogger = {
  info() {},
  warn: (fields, message) => console.warn(message, fields),
  error: (fields, message) => console.error(message, fields),
};
