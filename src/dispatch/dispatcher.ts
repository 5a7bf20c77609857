/**
 * Hands ready tasks to the worker sessions connected to this replica. Each session claims in
 * batches sized by its free credits; wake-ups come from NOTIFY (a task became ready), from credits
 * coming back, from timers for delayed tasks, and from a slow safety poll. Nothing here holds a
 * transaction open while a task runs: every claim and report is one statement, except the claims
 * of job types with limits (limited-claim.ts), one short transaction each.
 */
import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import type pg from "pg";
import type { Assignment, CompletionReport, FailureReport, LeaseRef, ReleaseReport } from "../core/task.js";
import type { Db } from "../store/db.js";
import { withParentOutputs } from "./claim-with-parents.js";
import { taskClaimAvailable } from "../store/sql/task-claim-available.js";
import { taskLeaseExtend } from "../store/sql/task-lease-extend.js";
import type { ReadyNotice, RevokeNotice } from "./ready-listener.js";
import type { ReportAnswer, ReportBatcher } from "./report-batcher.js";
import { DelayedWakes } from "./delayed-wakes.js";
import { LimitedClaimer } from "./limited-claim.js";
import type { LimitHints } from "../engine/job-type-registry.js";

/** Why a held attempt was taken back. */
export type RevokeReason = RevokeNotice["reason"];

/** How the dispatcher talks to one worker's stream. */
export interface SessionSink {
  assign(assignments: Assignment[]): void;
  revoke(notice: { taskId: string; attempt: number; reason: RevokeReason; message: string }): void;
}

/** One connected worker. */
export interface WorkerSession {
  readonly namespace: string;
  readonly workerId: string;
  readonly jobTypes: ReadonlySet<string>;
  readonly credits: number;
  /** Tasks this session holds: task id -> the lease it was given. */
  readonly inFlight: ReadonlyMap<string, Assignment>;
  /** The worker asked to stop: it gets no new tasks. */
  readonly draining: boolean;
  /** The stream ended: the session holds nothing any more. */
  readonly closed: boolean;
}

interface Session extends WorkerSession {
  sink: SessionSink;
  inFlight: Map<string, Assignment>;
  /** A claim may find work; cleared when a claim comes back short. */
  mayHaveWork: boolean;
  /** Bumped by every wake-up, so a short claim that raced a wake-up does not clear mayHaveWork. */
  wakeCount: number;
  claiming: boolean;
  /** Credits set aside for tasks being submitted straight to this session (see planDirect). */
  reserved: number;
  /** A pump is scheduled for the end of this microtask checkpoint. */
  pumpQueued: boolean;
  closed: boolean;
  draining: boolean;
  retryTimer: NodeJS.Timeout | undefined;
  /** Claims in a row that left keys of a limited job type unseen (see LimitedClaimResult.more). */
  moreRounds: number;
  /** Rotates which limited job type a session serving several claims for first. */
  limitedTurn: number;
}

/** Credits reserved on idle sessions for tasks being submitted (Dispatcher.planDirect). */
export interface DirectPlan {
  /** Per task, in submit order: the worker it goes to at once, or null for the queue. */
  readonly workerIds: readonly (string | null)[];
  /** After the insert committed: hands over the tasks it made RUNNING (by submit index); the rest were queued. */
  deliver(assigned: ReadonlyMap<number, Assignment>): void;
  /** The insert failed: the reserved credits are free again. */
  cancel(): void;
}

/** Idle: connected, taking work, its last claim found nothing, and a credit to spare. */
function isIdle(s: Session): boolean {
  return !s.closed && !s.draining && !s.claiming && !s.mayHaveWork && s.credits - s.inFlight.size - s.reserved > 0;
}

/** Claims in a row that may each look at a limited job type's next keys before waiting for a wake-up. */
const MAX_MORE_ROUNDS = 10;

/** Dispatcher settings. */
export interface DispatcherOptions {
  db: Db;
  /** For the limited claims' transactions. */
  pool: pg.Pool;
  /** Which job types have limits (their claims and direct hand-off differ). */
  limits: LimitHints;
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
  // Issue 8: every announced run_at gets its wake (one timer kept only the first, so later delayed
  // tasks of the same job type waited for the safety poll).
  private readonly delayedWakes = new DelayedWakes((key) => {
    const [ns, jt] = key.split("\u0000") as [string, string];
    this.onReady({ ns, jt, at: null });
  });
  private readonly pollTimer: NodeJS.Timeout;
  private readonly limited: LimitedClaimer;
  /** Claims and hand-backs in flight: stop() waits for them, so no task is left leased to no one. */
  private readonly background = new Set<Promise<unknown>>();
  private stopped = false;

  constructor(private readonly options: DispatcherOptions) {
    super();
    this.limited = new LimitedClaimer(options.pool);
    this.pollTimer = setInterval(() => this.wakeAll(), options.safetyPollMs);
    this.pollTimer.unref();
  }

  /** Opens a session holding `adopted` (leases taken over after a reconnect); it starts claiming at once. */
  open(params: {
    namespace: string;
    workerId: string;
    jobTypes: readonly string[];
    credits: number;
    sink: SessionSink;
    adopted?: readonly Assignment[];
  }): WorkerSession {
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
      reserved: 0,
      pumpQueued: false,
      closed: false,
      draining: false,
      retryTimer: undefined,
      moreRounds: 0,
      limitedTurn: 0,
    };
    for (const a of params.adopted ?? []) this.hold(session, a);
    this.sessions.add(session);
    this.pump(session);
    return session;
  }

  /**
   * A heartbeat: extends the leases of everything the session holds. An attempt whose lease could
   * not be extended was taken back meanwhile (swept, cancelled); its worker is told.
   */
  async heartbeat(handle: WorkerSession): Promise<void> {
    const session = handle as Session;
    const held = [...session.inFlight.values()];
    const extended = await taskLeaseExtend(this.options.db, { namespace: session.namespace, workerId: session.workerId, leases: held });
    const alive = new Set(extended.map((e) => `${e.taskId}/${e.attempt}`));
    for (const a of held) {
      // Still held and not extended: taken back meanwhile. (A lease whose report arrived during
      // the extension has left inFlight: its report decides.)
      if (alive.has(`${a.taskId}/${a.attempt}`) || session.inFlight.get(a.taskId) !== a) continue;
      this.release(session, a.taskId, a.attempt);
      session.sink.revoke({ taskId: a.taskId, attempt: a.attempt, reason: "lease_lost", message: `the lease of task ${a.taskId} attempt ${a.attempt} is no longer held` });
    }
  }

  /** The worker is stopping: no new tasks for it. */
  drain(handle: WorkerSession): void {
    (handle as Session).draining = true;
  }

  /**
   * Closes a session. After a clean close (the worker ended its side) the tasks it still holds go
   * back to PENDING at once, their attempts not counted (see releaseLeft). After a broken stream they keep
   * their leases: the worker may reconnect (to any replica) and adopt them, and if it does not,
   * the sweeper takes them back when the leases end.
   */
  async close(handle: WorkerSession, how: { clean: boolean; why: string }): Promise<void> {
    const session = handle as Session;
    if (session.closed) return;
    session.closed = true;
    clearTimeout(session.retryTimer);
    this.sessions.delete(session);
    const held = [...session.inFlight.values()];
    session.inFlight.clear();
    // Only what this session still holds: a lease adopted meanwhile by the worker's new stream
    // (same lease token) is that stream's now.
    const own = held.filter((a) => this.holders.get(a.taskId) === session);
    for (const a of own) this.holders.delete(a.taskId);
    if (how.clean) await Promise.all(own.map((a) => this.releaseLeft(a, session.workerId, how.why)));
    this.emit("session:closed", session);
  }

  /**
   * Records a completion, from a stream or a unary call. The holder on this replica (if any) gets
   * its credit back at once, before the write: the worker is done with the task whatever the
   * answer, so the next claim overlaps this write instead of waiting for its commit. Only a report
   * naming the very lease the holder has frees it; one naming another lease changes nothing here.
   */
  complete(report: CompletionReport): Promise<ReportAnswer> {
    this.settle(report);
    return this.options.batcher.complete(report);
  }

  /** Records a failure (see complete). */
  fail(report: FailureReport): Promise<ReportAnswer> {
    this.settle(report);
    return this.options.batcher.fail(report);
  }

  /** Records a hand-back without counting the attempt (see complete). */
  releaseTask(report: ReleaseReport): Promise<ReportAnswer> {
    this.settle(report);
    return this.options.batcher.release(report);
  }

  /**
   * A final report arrived: the holder's lease leaves its in-flight set (so heartbeats stop
   * extending it, and cannot call it lost once the report commits) and its credit is free. Only a
   * report of the holder's namespace counts: another namespace's is refused by the write.
   */
  private settle(report: LeaseRef): void {
    const session = this.holders.get(report.taskId);
    const held = session?.inFlight.get(report.taskId);
    if (
      session !== undefined &&
      held !== undefined &&
      session.namespace === report.namespace &&
      held.attempt === report.attempt &&
      held.leaseToken === report.leaseToken
    ) {
      this.release(session, report.taskId, report.attempt);
    }
  }

  /**
   * Direct hand-off: tasks about to be submitted through this replica that an idle session could
   * run at once go straight to it, inserted already RUNNING and leased to its worker, instead of
   * being queued, announced by NOTIFY and claimed by a second statement (a round trip and a row
   * version less per task, and the latency of a submit to an idle worker halves). A session is
   * idle when its last claim found the queue empty and nothing woke it since; its free credits
   * are reserved here until deliver() or cancel(). Only tasks ready now qualify, best priority
   * first; the insert itself queues any that would overtake a task already waiting (see
   * task-insert-batch). Tasks of job types with limits never go direct (only the limited claim may
   * start them), nor do those of job types whose limits are not known yet. Returns undefined when
   * no task can go direct.
   */
  planDirect(tasks: readonly { namespace: string; jobType: string; priority: number; runAt: Date | null }[]): DirectPlan | undefined {
    const order = [...tasks.keys()].filter((i) => tasks[i]!.runAt === null && this.options.limits.limitedHint(tasks[i]!.namespace, tasks[i]!.jobType) === false);
    if (order.length === 0 || this.sessions.size === 0) return undefined;
    order.sort((a, b) => tasks[b]!.priority - tasks[a]!.priority || a - b);
    const idle = new Map<string, Session[]>();
    const targets: (Session | undefined)[] = new Array(tasks.length);
    let planned = 0;
    for (const i of order) {
      const { namespace, jobType } = tasks[i]!;
      const key = `${namespace}\u0000${jobType}`;
      let candidates = idle.get(key);
      if (candidates === undefined) {
        candidates = [...this.sessions].filter((x) => x.namespace === namespace && x.jobTypes.has(jobType) && isIdle(x));
        idle.set(key, candidates);
      }
      // Round-robin over the idle sessions that still have a free credit.
      const session = candidates.shift();
      if (session === undefined) continue;
      session.reserved += 1;
      targets[i] = session;
      planned += 1;
      if (isIdle(session)) candidates.push(session);
    }
    if (planned === 0) return undefined;
    return {
      workerIds: Array.from(targets, (x) => x?.workerId ?? null),
      deliver: (assigned) => this.deliverDirect(targets, assigned),
      cancel: () => {
        for (const session of new Set(targets)) {
          if (session === undefined) continue;
          session.reserved -= targets.filter((x) => x === session).length;
          this.pump(session);
        }
      },
    };
  }

  private deliverDirect(targets: readonly (Session | undefined)[], assigned: ReadonlyMap<number, Assignment>): void {
    const bySession = new Map<Session, { delivered: Assignment[]; queued: number }>();
    targets.forEach((session, i) => {
      if (session === undefined) return;
      session.reserved -= 1;
      const entry = bySession.get(session) ?? { delivered: [], queued: 0 };
      bySession.set(session, entry);
      const a = assigned.get(i);
      if (a === undefined) entry.queued += 1;
      else entry.delivered.push(a);
    });
    for (const [session, { delivered, queued }] of bySession) {
      if (session.closed || session.draining) {
        this.track(this.handBack(delivered, "not delivered: the worker was leaving"));
        continue;
      }
      for (const a of delivered) this.hold(session, a);
      if (delivered.length > 0) {
        session.sink.assign(delivered);
        this.emit("task:claimed", delivered);
      }
      // Queued instead: another task was waiting ahead of it, so the queue is not empty.
      if (queued > 0) this.wake(session);
    }
  }

  /** Tasks a worker never saw go back to PENDING without counting the attempt. */
  private handBack(assignments: readonly Assignment[], reason: string): Promise<unknown> {
    return Promise.all(
      assignments.map((a) =>
        this.options.batcher
          .release({ namespace: a.namespace, taskId: a.taskId, attempt: a.attempt, leaseToken: a.leaseToken, reason })
          .catch((error: unknown) => this.options.logger.error({ err: error, taskId: a.taskId }, "could not hand back an undelivered task")),
      ),
    );
  }

  /** A NOTIFY said tasks of (ns, jt) are ready now, or will be at `at`. */
  onReady(notice: ReadyNotice): void {
    const delay = notice.at === null ? 0 : notice.at - Date.now();
    if (delay > 0) {
      this.wakeLater(notice.ns, notice.jt, delay);
      return;
    }
    this.limited.touch(notice.ns, notice.jt);
    for (const session of this.sessions) {
      if (session.namespace === notice.ns && session.jobTypes.has(notice.jt)) this.wake(session);
    }
  }

  /** A NOTIFY said a running attempt was revoked (cancelled, timed out, lease lost); tell its holder if it is connected here. */
  onRevoke(notice: RevokeNotice): void {
    const session = this.holders.get(notice.id);
    const held = session?.inFlight.get(notice.id);
    if (session === undefined || held === undefined || held.attempt !== notice.attempt) return;
    this.release(session, notice.id, notice.attempt);
    session.sink.revoke({ taskId: notice.id, attempt: notice.attempt, reason: notice.reason, message: notice.message });
  }

  /** Wakes every session (safety poll, or after notifications may have been missed). */
  wakeAll(): void {
    this.limited.touchAll();
    for (const session of this.sessions) this.wake(session);
  }

  /**
   * Stops timers and claiming, then waits for the claims and hand-backs in flight (a claim that
   * returns for a session closed meanwhile hands its tasks back); sessions are closed by their
   * streams. The database must stay open until this resolves.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.pollTimer);
    this.delayedWakes.clear();
    for (const session of this.sessions) clearTimeout(session.retryTimer);
    while (this.background.size > 0) await Promise.allSettled([...this.background]);
  }

  private track(work: Promise<unknown>): void {
    this.background.add(work);
    const done = () => this.background.delete(work);
    work.then(done, done);
  }

  private wakeLater(ns: string, jt: string, delayMs: number): void {
    this.delayedWakes.add(`${ns}\u0000${jt}`, Date.now() + delayMs);
  }

  private hold(session: Session, a: Assignment): void {
    session.inFlight.set(a.taskId, a);
    this.holders.set(a.taskId, session);
  }

  private wake(session: Session): void {
    session.wakeCount += 1;
    session.mayHaveWork = true;
    this.pump(session);
  }

  /**
   * Frees the credit of a task the session held (reported or revoked), then looks for more work:
   * in a microtask, so that the credits a whole batch of reports frees are claimed together.
   */
  private release(session: Session, taskId: string, attempt: number): void {
    const held = session.inFlight.get(taskId);
    if (held === undefined || held.attempt !== attempt) return;
    session.inFlight.delete(taskId);
    if (this.holders.get(taskId) === session) this.holders.delete(taskId);
    if (session.pumpQueued) return;
    session.pumpQueued = true;
    queueMicrotask(() => {
      session.pumpQueued = false;
      this.pump(session);
    });
  }

  /** Claims while the session has free credits and the queue may hold work; one claim at a time. */
  private pump(session: Session): void {
    if (session.claiming || session.closed || session.draining || this.stopped) return;
    const free = session.credits - session.inFlight.size - session.reserved;
    if (free <= 0 || !session.mayHaveWork) return;
    // A busy session claims once a quarter of its credits are free, not at every single one:
    // fewer, larger claims (each a commit). An idle one claims at once.
    if (session.inFlight.size > 0 && free < Math.ceil(session.credits / 4)) return;
    session.claiming = true;
    const wakeCount = session.wakeCount;
    const claim = this.claim({ namespace: session.namespace, jobTypes: [...session.jobTypes], limit: free, workerId: session.workerId }, session)
      .then(async ({ claimed, more }) => {
        session.claiming = false;
        if (session.closed || session.draining) {
          // The stream ended (or began draining) while claiming: the worker never saw these.
          await this.handBack(claimed, "not delivered: the worker was leaving");
          return;
        }
        // A limited claim that left keys unseen is claimed again at once, a bounded number of
        // times in a row (a job type whose keys are all at their limit must not spin).
        session.moreRounds = more ? session.moreRounds + 1 : 0;
        const lookFurther = more && session.moreRounds <= MAX_MORE_ROUNDS;
        if (claimed.length < free && session.wakeCount === wakeCount && !lookFurther) session.mayHaveWork = false;
        for (const a of claimed) this.hold(session, a);
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
        if (!this.stopped) session.retryTimer = setTimeout(() => this.wake(session), 1_000);
      });
    this.track(claim);
  }

  /**
   * Claims up to `limit` tasks of `jobTypes` (a session's, or a unary ClaimTasks call's). Job types
   * without limits share the one-statement claim, in priority order, exactly as without this
   * feature; each job type with limits gets its own limited claim, before them. When a rate limit
   * stopped one, a timer wakes its sessions when the next start is allowed; when a concurrency
   * limit did, the NOTIFY of a limited task that stops running does (task_notify_limit_freed).
   */
  async claimFor(params: { namespace: string; jobTypes: readonly string[]; limit: number; workerId: string }): Promise<Assignment[]> {
    return (await this.claim(params, undefined)).claimed;
  }

  /** Claims for a session or a unary call: the ordinary statement, or the limited claims; then the parents' outputs of tasks with dependencies. */
  private async claim(params: { namespace: string; jobTypes: readonly string[]; limit: number; workerId: string }, session: Session | undefined): Promise<{ claimed: Assignment[]; more: boolean }> {
    const { namespace, jobTypes } = params;
    const hints = jobTypes.map((jt) => this.options.limits.limitedHint(namespace, jt));
    const result = hints.every((h) => h === false)
      ? { claimed: await taskClaimAvailable(this.options.db, params), more: false }
      : await this.claimMixed(params, hints, session);
    return { claimed: await withParentOutputs(this.options.db, result.claimed), more: result.more };
  }

  private async claimMixed(
    params: { namespace: string; jobTypes: readonly string[]; limit: number; workerId: string },
    hints: readonly (boolean | undefined)[],
    session: Session | undefined,
  ): Promise<{ claimed: Assignment[]; more: boolean }> {
    const { namespace, jobTypes, workerId } = params;
    const limited = await Promise.all(jobTypes.map((jt, i) => hints[i] ?? this.options.limits.limited(namespace, jt)));
    const withLimits = jobTypes.filter((_, i) => limited[i]);
    const without = jobTypes.filter((_, i) => !limited[i]);
    const claimed: Assignment[] = [];
    let more = false;
    const turn = session === undefined ? 0 : session.limitedTurn++;
    try {
      for (let k = 0; k < withLimits.length && claimed.length < params.limit; k++) {
        const jobType = withLimits[(turn + k) % withLimits.length]!;
        const result = await this.limited.claim({ namespace, jobType, want: params.limit - claimed.length, workerId });
        claimed.push(...result.assignments);
        more ||= result.more;
        if (result.retryAfterMs !== null) this.wakeLater(namespace, jobType, result.retryAfterMs);
      }
      if (without.length > 0 && claimed.length < params.limit) {
        claimed.push(...(await taskClaimAvailable(this.options.db, { namespace, jobTypes: without, limit: params.limit - claimed.length, workerId })));
      }
    } catch (error) {
      // What the earlier claims took never reaches the worker: back to PENDING, attempt not counted.
      await this.handBack(claimed, "not delivered: a later claim of the same batch failed");
      throw error;
    }
    return { claimed, more };
  }

  /**
   * What a worker still holds when it ends its stream cleanly goes back to PENDING without counting
   * the attempt: the protocol has it release what it will not finish before closing, and a task
   * assigned just before the server read its drain may reach it only after it closed its side, too
   * late to release.
   */
  private async releaseLeft(a: Assignment, workerId: string, why: string): Promise<void> {
    try {
      await this.options.batcher.release({ namespace: a.namespace, taskId: a.taskId, attempt: a.attempt, leaseToken: a.leaseToken, reason: `worker ${workerId} left: ${why}` });
    } catch (error) {
      this.options.logger.error({ err: error, taskId: a.taskId }, "could not hand back a task its worker left");
    }
  }
}
