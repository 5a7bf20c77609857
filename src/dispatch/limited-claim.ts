/**
 * The claim for job types with rate or concurrency limits. One transaction per claim: it takes the
 * job type's advisory lock (so limited claims of one job type on all replicas run one at a time),
 * reads what counts against the limits, chooses the tasks round-robin across concurrency keys
 * (src/core/claim-limits.ts), and claims them, so two replicas can never both take the last slot.
 * Job types without limits never come here: they keep the one-statement claim
 * (src/store/sql/task-claim-available.ts).
 *
 * On this replica, limited claims of one job type also run one at a time (each would otherwise
 * hold a pooled connection while it waits for the lock), and a claim that found no capacity left
 * makes the next ones skip the database until something may have changed for that job type: a
 * notification (tasks submitted, a limited task finished, the job type changed), a rate timer, or
 * a safety poll (touch / touchAll). So a burst of wake-ups costs one claim, not one per session.
 */
import type pg from "pg";
import { claimAllowance, planLimitedClaim, rateAllowance, rateBucketMs, rateWaitMs, type ClaimGroup, type StartBucket } from "../core/claim-limits.js";
import type { Assignment } from "../core/task.js";
import { withTransaction } from "../store/orm.js";
import { jobTypeLimitLock } from "../store/sql/advisory-locks.js";
import { jobTypeLimitState } from "../store/sql/job-type-limit-state.js";
import { taskClaimLimited } from "../store/sql/task-claim-limited.js";
import { taskLimitedCandidates } from "../store/sql/task-limited-candidates.js";
import { taskLimitedRepair } from "../store/sql/task-limited-repair.js";

/** Keys one claim looks at, at most (each costs a few index descents). */
const MAX_PROBES = 1_000;
/** After a job type changes, its tasks are re-marked as limited for this long (see task-limited-repair.ts). */
const REPAIR_GRACE_MS = 30_000;
/** ... at most this often. */
const REPAIR_EVERY_MS = 2_000;

/** What a limited claim took, and when to try again if it took fewer than wanted. */
export interface LimitedClaimResult {
  assignments: Assignment[];
  /** The rate limit is what stopped it: a start is allowed again in this many ms. Null otherwise (or never: max_starts 0). */
  retryAfterMs: number | null;
  /** It stopped looking before it had seen every key: claim again without waiting for a wake-up. */
  more: boolean;
}

function slot(namespace: string, jobType: string): string {
  return `${namespace}\u0000${jobType}`;
}

/** Runs the limited claims of this replica. */
export class LimitedClaimer {
  /** Per job type, the last claim queued (claims of one job type run in turn). */
  private readonly tails = new Map<string, Promise<unknown>>();
  /** Bumped per job type by touch(), for all by touchAll(). */
  private readonly touches = new Map<string, number>();
  private epoch = 0;
  /** Per job type: the touch count when a claim that found nothing more to take began. */
  private readonly exhaustedAt = new Map<string, number>();

  constructor(private readonly pool: pg.Pool) {}

  /** Capacity or tasks of the job type may have changed. */
  touch(namespace: string, jobType: string): void {
    const key = slot(namespace, jobType);
    // Only job types with a claim in flight or found exhausted can skip a claim because of it.
    if (!this.exhaustedAt.has(key) && !this.tails.has(key)) return;
    this.touches.set(key, (this.touches.get(key) ?? 0) + 1);
  }

  /** Anything may have changed (safety poll, reconnected notifications). */
  touchAll(): void {
    this.epoch += 1;
  }

  private version(key: string): number {
    return this.epoch + (this.touches.get(key) ?? 0);
  }

  /** Claims up to `want` tasks of one limited job type for `workerId`. */
  claim(params: { namespace: string; jobType: string; want: number; workerId: string }): Promise<LimitedClaimResult> {
    const key = slot(params.namespace, params.jobType);
    const previous = this.tails.get(key) ?? Promise.resolve();
    const run = previous.then(async (): Promise<LimitedClaimResult> => {
      const version = this.version(key);
      if (this.exhaustedAt.get(key) === version) return { assignments: [], retryAfterMs: null, more: false };
      const result = await claimLimited(this.pool, params);
      if (result.assignments.length < params.want && !result.more) this.exhaustedAt.set(key, version);
      else this.exhaustedAt.delete(key);
      return result;
    });
    const tail = run.catch(() => undefined);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return run;
  }
}

/** One limited claim, in one transaction (see the module comment). */
export async function claimLimited(pool: pg.Pool, params: { namespace: string; jobType: string; want: number; workerId: string }): Promise<LimitedClaimResult> {
  const { namespace, jobType, want, workerId } = params;
  return withTransaction(pool, async (db) => {
    await jobTypeLimitLock(db, namespace, jobType);
    const read = () => jobTypeLimitState(db, { namespace, jobType, repairGraceMs: REPAIR_GRACE_MS, repairEveryMs: REPAIR_EVERY_MS });
    let state = await read();
    if (state === undefined) return { assignments: [], retryAfterMs: null, more: false };
    if (state.needsRepair) {
      await taskLimitedRepair(db, namespace, jobType);
      state = (await read())!;
    }
    const rate = state.rateLimit;
    const allowance = claimAllowance({
      want,
      maxRunning: state.maxRunning,
      running: state.running,
      rateAllowance: rate === null ? null : rateAllowance(rate, state.buckets, state.atMs),
    });
    let groups: ClaimGroup[] = [];
    let truncated = false;
    let lastProbed: string | null = null;
    if (allowance > 0) {
      const candidates = await taskLimitedCandidates(db, { namespace, jobType, cursor: state.cursor, want: allowance, maxRunningPerKey: state.maxRunningPerKey, maxProbes: MAX_PROBES });
      ({ groups, truncated, lastProbed } = candidates);
    }
    const picks = planLimitedClaim({ groups, allowance, maxRunningPerKey: state.maxRunningPerKey });
    const more = truncated && picks.length < allowance;
    // Round-robin: the next claim starts after the group served last ("" is the group without a
    // key), or, when this one served none but left keys unseen, after the last key it looked at.
    const cursor = picks.length > 0 ? (picks.at(-1)!.key ?? "") : more ? lastProbed : state.cursor;
    let assignments: Assignment[] = [];
    let atMs = state.atMs;
    let buckets: StartBucket[] = state.buckets;
    if (picks.length > 0 || cursor !== state.cursor) {
      const claimed = await taskClaimLimited(db, {
        namespace,
        jobType,
        ids: picks.map((p) => p.id),
        workerId,
        leaseMs: state.leaseMs,
        rateWindowMs: rate?.windowMs ?? null,
        bucketMs: rate === null ? 1 : rateBucketMs(rate.windowMs),
        cursor,
      });
      assignments = claimed.assignments;
      if (claimed.atMs !== null && rate !== null) {
        atMs = claimed.atMs;
        const width = rateBucketMs(rate.windowMs);
        buckets = [...buckets, { endsAtMs: Math.floor(atMs / width) * width + width, starts: assignments.length }];
      }
    }
    // A wait of 0 means the rate is not what stopped the claim.
    const waitMs = rate === null || assignments.length >= want ? null : rateWaitMs(rate, buckets, atMs);
    return { assignments, retryAfterMs: waitMs === null || waitMs <= 0 ? null : waitMs, more };
  });
}
