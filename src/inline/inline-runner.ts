/**
 * Runs inline job types on this replica's thread pool. The runner is one more worker: a dispatcher
 * session per namespace claims its inline tasks (credits = its share of what the pool takes at
 * once, so a full pool stops claiming instead of buffering), holds their leases with heartbeats,
 * and reports through the same batched complete/fail/release path as a remote worker. A timeout, a cancel or a lost
 * lease aborts the attempt's Piscina task, which terminates its thread.
 */
import type { Logger } from "pino";
import type { Assignment, Payload } from "../core/task.js";
import type { Dispatcher, RevokeReason, WorkerSession } from "../dispatch/dispatcher.js";
import type { Db } from "../store/db.js";
import { jobTypeInlineList, type InlineJobType } from "../store/sql/job-type-inline-list.js";
import { creditShares } from "./credit-shares.js";
import { PoolFullError, type InlinePool } from "./inline-pool.js";
import { NON_RETRYABLE } from "./thread.js";

/** Why an attempt's thread was stopped. */
type StopReason = { kind: "timeout"; ms: number } | { kind: "revoked"; reason: RevokeReason } | { kind: "shutdown" };

interface Running {
  assignment: Assignment;
  controller: AbortController;
  timer: NodeJS.Timeout | undefined;
  done: Promise<void>;
}

interface NamespaceSession {
  session: WorkerSession;
  jobTypes: Map<string, InlineJobType>;
  /** Its share of the pool (see creditShares). */
  credits: number;
  lastBeat: number;
  openedAt: number;
}

/** How often the runner checks for due heartbeats (ms); leases are at least 1 s, beaten at a third. */
const TICK_MS = 100;
/** A session keeps its credits at least this long (ms) while other namespaces wait for a turn. */
const MIN_TURN_MS = 200;

export class InlineRunner {
  private readonly sessions = new Map<string, NamespaceSession>();
  /** Sessions draining (job types changed or no longer inline), closed once their attempts are done. */
  private readonly retiring = new Set<NamespaceSession>();
  /** The inline job types by namespace, as last read. */
  private wanted = new Map<string, Map<string, InlineJobType>>();
  /** When each namespace's session was last opened: the longest waiting gets the next free credits. */
  private readonly lastTurn = new Map<string, number>();
  /** Attempts held, from assignment until their report is answered. */
  private readonly running = new Map<string, Running>();
  /** Attempts on the pool (running or queued for a thread): a finished one's report may still be in flight. */
  private onPool = 0;
  private readonly refreshTimer: NodeJS.Timeout;
  private readonly tickTimer: NodeJS.Timeout;
  private refreshing: Promise<void> | undefined;
  private stopping = false;

  constructor(
    private readonly deps: { db: Db; dispatcher: Dispatcher; pool: InlinePool; logger: Logger; workerId: string },
    refreshMs: number,
  ) {
    // Job types registered on other replicas become known here within refreshMs.
    this.refreshTimer = setInterval(() => void this.refresh(), refreshMs);
    this.refreshTimer.unref();
    this.tickTimer = setInterval(() => {
      this.heartbeatDue();
      this.balance();
    }, TICK_MS);
    this.tickTimer.unref();
  }

  /** Why `name` cannot be an inline module, or null. */
  moduleProblem(name: string): string | null {
    return this.deps.pool.moduleProblem(name);
  }

  /** Attempts running or queued on the pool now (for metrics and tests). */
  get runningCount(): number {
    return this.onPool;
  }

  /** Re-reads the inline job types and matches the sessions to them (see balance). */
  refresh(): Promise<void> {
    this.refreshing ??= (async () => {
      try {
        const all = await jobTypeInlineList(this.deps.db);
        if (this.stopping) return;
        const byNamespace = new Map<string, Map<string, InlineJobType>>();
        for (const jt of all) {
          if (!byNamespace.has(jt.namespace)) byNamespace.set(jt.namespace, new Map());
          byNamespace.get(jt.namespace)!.set(jt.name, jt);
        }
        this.wanted = byNamespace;
        this.balance();
      } catch (error) {
        this.deps.logger.warn({ err: error }, "could not read the inline job types; retrying at the next refresh");
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }

  /**
   * Stops claiming, lets running attempts finish for up to `graceMs`, then stops the rest and hands
   * them back to PENDING without counting the attempt; closes the pool.
   */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    clearInterval(this.refreshTimer);
    for (const { session } of this.sessions.values()) this.deps.dispatcher.drain(session);
    let graceTimer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all([...this.running.values()].map((r) => r.done)), new Promise((resolve) => (graceTimer = setTimeout(resolve, graceMs)))]);
    clearTimeout(graceTimer);
    for (const r of this.running.values()) r.controller.abort({ kind: "shutdown" } satisfies StopReason);
    await Promise.all([...this.running.values()].map((r) => r.done));
    clearInterval(this.tickTimer);
    await Promise.all([...this.sessions.values()].map(({ session }) => this.deps.dispatcher.close(session, { clean: true, why: "the server stopped" })));
    this.sessions.clear();
    await this.deps.pool.close();
  }

  /**
   * Matches the sessions to the inline job types and shares the pool among them (the one capacity
   * gate: the credits of open sessions plus the attempts of retiring ones never exceed threads +
   * queue). A session whose job types or share changed, or whose namespace has none left, retires
   * (it would go on claiming them with their old modules); namespaces without a session get one as
   * credits come free, in turn.
   */
  private balance(): void {
    if (this.stopping) return;
    const shares = creditShares(this.deps.pool.capacity, this.wanted.keys());
    for (const [namespace, entry] of this.sessions) {
      const jobTypes = this.wanted.get(namespace);
      if (jobTypes !== undefined && sameJobTypes(entry.jobTypes, jobTypes) && entry.credits === shares.get(namespace)) continue;
      this.sessions.delete(namespace);
      this.retire(entry, jobTypes === undefined ? "its job types are no longer inline" : "its job types changed");
    }
    const waiting = [...this.wanted.keys()].filter((namespace) => !this.sessions.has(namespace));
    waiting.sort((a, b) => (this.lastTurn.get(a) ?? 0) - (this.lastTurn.get(b) ?? 0));
    if (waiting.length === 0) return;
    // More namespaces than credits: a session that has had its turn stops claiming, and its credits
    // go to the longest waiting as its attempts finish (a busy one never looks idle: it claims
    // again as soon as a report frees a credit).
    const now = Date.now();
    for (const [namespace, entry] of this.sessions) {
      if (now - entry.openedAt < MIN_TURN_MS) continue;
      this.sessions.delete(namespace);
      this.retire(entry, "another namespace's turn");
      waiting.push(namespace);
    }
    let free = this.deps.pool.capacity - this.creditsHeld();
    for (const namespace of waiting) {
      const credits = shares.get(namespace)!;
      if (credits > free) break;
      free -= credits;
      this.open(namespace, this.wanted.get(namespace)!, credits);
    }
  }

  /** Credits of the open sessions plus the attempts retiring ones still hold. */
  private creditsHeld(): number {
    let held = 0;
    for (const entry of this.sessions.values()) held += entry.credits;
    for (const entry of this.retiring) held += entry.session.inFlight.size;
    return held;
  }

  private open(namespace: string, jobTypes: Map<string, InlineJobType>, credits: number): void {
    const now = Date.now();
    const entry: NamespaceSession = { session: undefined as unknown as WorkerSession, jobTypes, credits, lastBeat: now, openedAt: now };
    this.lastTurn.set(namespace, now);
    entry.session = this.deps.dispatcher.open({
      namespace,
      workerId: this.deps.workerId,
      jobTypes: [...jobTypes.keys()],
      credits,
      sink: {
        assign: (assignments) => {
          for (const a of assignments) this.start(entry, a);
        },
        revoke: (notice) => this.running.get(notice.taskId)?.controller.abort({ kind: "revoked", reason: notice.reason } satisfies StopReason),
      },
    });
    this.sessions.set(namespace, entry);
  }

  /**
   * Stops a session claiming and closes it once its attempts are done; until then it stays in
   * `retiring`, so their leases are still extended.
   */
  private retire(entry: NamespaceSession, why: string): void {
    this.deps.dispatcher.drain(entry.session);
    this.retiring.add(entry);
    void (async () => {
      while (entry.session.inFlight.size > 0) await new Promise((resolve) => setTimeout(resolve, TICK_MS));
      this.retiring.delete(entry);
      await this.deps.dispatcher.close(entry.session, { clean: true, why });
    })();
  }

  private start(entry: NamespaceSession, a: Assignment): void {
    const jobType = entry.jobTypes.get(a.jobType);
    const controller = new AbortController();
    const timer =
      a.timeoutMs === null ? undefined : setTimeout(() => controller.abort({ kind: "timeout", ms: a.timeoutMs! } satisfies StopReason), a.timeoutMs);
    const running: Running = { assignment: a, controller, timer, done: Promise.resolve() };
    this.running.set(a.taskId, running);
    running.done = (async () => {
      try {
        let output: Payload | null;
        try {
          if (jobType === undefined) throw new Error(`job type ${a.jobType} is no longer inline on this server`);
          output = await this.runOnPool(jobType, a, controller.signal);
        } catch (error) {
          await this.reportFailure(a, controller.signal, error);
          return;
        }
        // Outside the handler's try: a completion that could not be written is not a failure of the work.
        await this.reportSuccess(a, output);
      } finally {
        clearTimeout(timer);
        if (this.running.get(a.taskId) === running) this.running.delete(a.taskId);
        this.balance(); // its credit may be another namespace's turn
      }
    })();
  }

  private async runOnPool(jobType: InlineJobType, a: Assignment, signal: AbortSignal): Promise<Payload | null> {
    this.onPool += 1;
    try {
      return await this.deps.pool.run({ module: jobType.module, jobType: a.jobType, taskId: a.taskId, attempt: a.attempt, input: a.input, parents: a.parents, signal });
    } finally {
      this.onPool -= 1;
    }
  }

  private async reportSuccess(a: Assignment, output: Payload | null): Promise<void> {
    try {
      await this.deps.dispatcher.complete({ namespace: a.namespace, taskId: a.taskId, attempt: a.attempt, leaseToken: a.leaseToken, output });
    } catch (error) {
      // Never reported as a failure: the work is done. The lease, no longer extended, ends and the
      // sweeper takes the attempt back (or a retried write of the engine lands first).
      this.deps.logger.error({ err: error, taskId: a.taskId }, "could not record the success of an inline attempt");
    }
  }

  private async reportFailure(a: Assignment, signal: AbortSignal, error: unknown): Promise<void> {
    const lease = { namespace: a.namespace, taskId: a.taskId, attempt: a.attempt, leaseToken: a.leaseToken };
    try {
      const stop = signal.aborted ? (signal.reason as StopReason) : undefined;
      if (stop?.kind === "revoked") return; // the server already ended the attempt
      if (stop?.kind === "shutdown") {
        await this.deps.dispatcher.releaseTask({ ...lease, reason: "the server stopped while it ran" });
        return;
      }
      if (error instanceof PoolFullError) {
        // Not the handler's failure: the attempt never started (e.g. a thread still being replaced).
        await this.deps.dispatcher.releaseTask({ ...lease, reason: "the inline pool was full" });
        return;
      }
      if (stop?.kind === "timeout") {
        await this.deps.dispatcher.fail({ ...lease, error: `timed out after ${stop.ms} ms; its thread was stopped`, nonRetryable: false, outcome: "timed_out" });
        return;
      }
      const message = error instanceof Error ? error.message : String(error);
      const nonRetryable = message.startsWith(NON_RETRYABLE);
      await this.deps.dispatcher.fail({ ...lease, error: nonRetryable ? message.slice(NON_RETRYABLE.length) : message, nonRetryable, outcome: "failed" });
    } catch (reportError) {
      // The report left the session's in-flight set when it was made (Dispatcher.settle), so its
      // lease is no longer extended: the sweeper takes the attempt back when the lease ends.
      this.deps.logger.error({ err: reportError, taskId: a.taskId }, "could not report an inline attempt");
    }
  }

  /** Extends the leases of sessions whose shortest lease is a third gone since the last heartbeat. */
  private heartbeatDue(): void {
    const now = Date.now();
    for (const entry of [...this.sessions.values(), ...this.retiring]) {
      if (entry.session.inFlight.size === 0) {
        entry.lastBeat = now;
        continue;
      }
      const shortest = Math.min(...[...entry.jobTypes.values()].map((jt) => jt.leaseMs));
      if (now - entry.lastBeat < shortest / 3) continue;
      entry.lastBeat = now;
      this.deps.dispatcher.heartbeat(entry.session).catch((error: unknown) => this.deps.logger.warn({ err: error }, "inline heartbeat failed; retrying"));
    }
  }
}

function sameJobTypes(a: Map<string, InlineJobType>, b: Map<string, InlineJobType>): boolean {
  if (a.size !== b.size) return false;
  for (const [name, jt] of a) {
    const other = b.get(name);
    if (other === undefined || other.module !== jt.module || other.leaseMs !== jt.leaseMs) return false;
  }
  return true;
}
