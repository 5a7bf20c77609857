/**
 * Hands ready tasks to the worker sessions connected to this replica. Each session claims in
 * batches sized by its free credits; wake-ups come from NOTIFY (a task became ready), from credits
 * coming back, from timers for delayed tasks, and from a slow safety poll. Nothing here holds a
 * transaction: every claim and report is one statement.
 */
import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import type { Assignment, FailureReport } from "../core/task.js";
import type { Db } from "../store/db.js";
import { taskClaimAvailable } from "../store/sql/task-claim-available.js";
import type { ReadyNotice, RevokeNotice } from "./ready-listener.js";
import type { ReportAnswer, ReportBatcher } from "./report-batcher.js";

/** How the dispatcher talks to one worker's stream. */
export interface SessionSink {
  assign(assignments: Assignment[]): void;
  revoke(notice: { taskId: string; attempt: number; reason: "cancelled"; message: string }): void;
}

/** One connected worker. */
export interface WorkerSession {
  readonly namespace: string;
  readonly workerId: string;
  readonly jobTypes: ReadonlySet<string>;
  readonly credits: number;
  /** Tasks this session holds: task id -> the lease it was given. */
  readonly inFlight: ReadonlyMap<string, Assignment>;
}

interface Session extends WorkerSession {
  sink: SessionSink;
  inFlight: Map<string, Assignment>;
  /** A claim may find work; cleared when a claim comes back short. */
  mayHaveWork: boolean;
  /** Bumped by every wake-up, so a short claim that raced a wake-up does not clear mayHaveWork. */
  wakeCount: number;
  claiming: boolean;
  closed: boolean;
  retryTimer: NodeJS.Timeout | undefined;
}

/** Dispatcher settings. */
export interface DispatcherOptions {
  db: Db;
  batcher: ReportBatcher;
  logger: Logger;
  /** How often every session looks for work even without a notification (ms). */
  safetyPollMs: number;
}

/** Typed internal events that tests can await instead of sleeping. */
export interface DispatcherEvents {
  "task:claimed": [Assignment[]];
  "session:closed": [WorkerSession];
}

/** Dispatches tasks to this replica's worker sessions. */
export class Dispatcher extends EventEmitter<DispatcherEvents> {
  private readonly sessions = new Set<Session>();
  private readonly holders = new Map<string, Session>();
  private readonly delayedWakes = new Map<string, NodeJS.Timeout>();
  private readonly pollTimer: NodeJS.Timeout;

  constructor(private readonly options: DispatcherOptions) {
    super();
    this.pollTimer = setInterval(() => this.wakeAll(), options.safetyPollMs);
    this.pollTimer.unref();
  }

  /** Opens a session; it starts claiming at once. */
  open(params: { namespace: string; workerId: string; jobTypes: readonly string[]; credits: number; sink: SessionSink }): WorkerSession {
    const session: Session = {
      namespace: params.namespace,
      workerId: params.workerId,
      jobTypes: new Set(params.jobTypes),
      credits: params.credits,
      sink: params.sink,
      inFlight: new Map(),
      mayHaveWork: true,
      wakeCount: 0,
      claiming: false,
      closed: false,
      retryTimer: undefined,
    };
    this.sessions.add(session);
    this.pump(session);
    return session;
  }

  /**
   * Closes a session. The attempts it still holds are recorded as lost and their tasks go back to
   * PENDING (with backoff) or to DEAD when no attempt is left.
   */
  async close(handle: WorkerSession, why: string): Promise<void> {
    const session = handle as Session;
    if (session.closed) return;
    session.closed = true;
    clearTimeout(session.retryTimer);
    this.sessions.delete(session);
    const held = [...session.inFlight.values()];
    session.inFlight.clear();
    for (const a of held) this.holders.delete(a.taskId);
    await Promise.all(held.map((a) => this.failLost(a, session.workerId, why)));
    this.emit("session:closed", session);
  }

  /** Records a completion reported by a session's worker. */
  async complete(handle: WorkerSession, report: Parameters<ReportBatcher["complete"]>[0]): Promise<ReportAnswer> {
    try {
      return await this.options.batcher.complete(report);
    } finally {
      this.release(handle as Session, report.taskId, report.attempt);
    }
  }

  /** Records a failure reported by a session's worker. */
  async fail(handle: WorkerSession, report: FailureReport): Promise<ReportAnswer> {
    try {
      return await this.options.batcher.fail(report);
    } finally {
      this.release(handle as Session, report.taskId, report.attempt);
    }
  }

  /** A NOTIFY said tasks of (ns, jt) are ready now, or will be at `at`. */
  onReady(notice: ReadyNotice): void {
    const delay = notice.at === null ? 0 : notice.at - Date.now();
    if (delay > 0) {
      this.wakeLater(notice.ns, notice.jt, delay);
      return;
    }
    for (const session of this.sessions) {
      if (session.namespace === notice.ns && session.jobTypes.has(notice.jt)) this.wake(session);
    }
  }

  /** A NOTIFY said a running attempt was revoked; tell its holder if it is connected here. */
  onRevoke(notice: RevokeNotice): void {
    const session = this.holders.get(notice.id);
    const held = session?.inFlight.get(notice.id);
    if (session === undefined || held === undefined || held.attempt !== notice.attempt) return;
    this.release(session, notice.id, notice.attempt);
    session.sink.revoke({ taskId: notice.id, attempt: notice.attempt, reason: notice.reason, message: notice.message });
  }

  /** Wakes every session (safety poll, or after notifications may have been missed). */
  wakeAll(): void {
    for (const session of this.sessions) this.wake(session);
  }

  /** Stops timers; sessions are closed by their streams. */
  stop(): void {
    clearInterval(this.pollTimer);
    for (const timer of this.delayedWakes.values()) clearTimeout(timer);
    this.delayedWakes.clear();
    for (const session of this.sessions) clearTimeout(session.retryTimer);
  }

  private wakeLater(ns: string, jt: string, delayMs: number): void {
    const key = `${ns}\u0000${jt}`;
    if (this.delayedWakes.has(key)) return; // the safety poll covers later ones
    const timer = setTimeout(() => {
      this.delayedWakes.delete(key);
      this.onReady({ ns, jt, at: null });
    }, Math.min(delayMs, this.options.safetyPollMs) + 1);
    timer.unref();
    this.delayedWakes.set(key, timer);
  }

  private wake(session: Session): void {
    session.wakeCount += 1;
    session.mayHaveWork = true;
    this.pump(session);
  }

  /** Frees the credit of a task the session held (reported or revoked), then looks for more work. */
  private release(session: Session, taskId: string, attempt: number): void {
    const held = session.inFlight.get(taskId);
    if (held === undefined || held.attempt !== attempt) return;
    session.inFlight.delete(taskId);
    this.holders.delete(taskId);
    this.pump(session);
  }

  /** Claims while the session has free credits and the queue may hold work; one claim at a time. */
  private pump(session: Session): void {
    if (session.claiming || session.closed) return;
    const free = session.credits - session.inFlight.size;
    if (free <= 0 || !session.mayHaveWork) return;
    session.claiming = true;
    const wakeCount = session.wakeCount;
    taskClaimAvailable(this.options.db, {
      namespace: session.namespace,
      jobTypes: [...session.jobTypes],
      limit: free,
      workerId: session.workerId,
    })
      .then(async (claimed) => {
        session.claiming = false;
        if (session.closed) {
          // The stream ended while claiming: the worker never saw these, give them back.
          await Promise.all(claimed.map((a) => this.failLost(a, session.workerId, "worker disconnected before delivery")));
          return;
        }
        if (claimed.length < free && session.wakeCount === wakeCount) session.mayHaveWork = false;
        for (const a of claimed) {
          session.inFlight.set(a.taskId, a);
          this.holders.set(a.taskId, session);
        }
        if (claimed.length > 0) {
          session.sink.assign(claimed);
          this.emit("task:claimed", claimed);
        }
        this.pump(session);
      })
      .catch((error: unknown) => {
        session.claiming = false;
        this.options.logger.warn({ err: error, workerId: session.workerId }, "claim failed; retrying in 1 s");
        clearTimeout(session.retryTimer);
        session.retryTimer = setTimeout(() => this.wake(session), 1_000);
      });
  }

  private async failLost(a: Assignment, workerId: string, why: string): Promise<void> {
    try {
      await this.options.batcher.fail({
        namespace: a.namespace,
        taskId: a.taskId,
        attempt: a.attempt,
        leaseToken: a.leaseToken,
        error: `worker ${workerId} went away: ${why}`,
        nonRetryable: false,
        outcome: "lost",
      });
    } catch (error) {
      this.options.logger.error({ err: error, taskId: a.taskId }, "could not record a lost attempt");
    }
  }
}
