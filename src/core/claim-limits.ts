/**
 * The arithmetic of rate and concurrency limits (no I/O): how many tasks a limited claim may take,
 * which ones (round-robin across concurrency keys), and when a rate-limited job type may start
 * again. The limited claim (src/dispatch/limited-claim.ts) reads the counts from the database
 * under a per-job-type lock and asks these functions what to claim.
 *
 * Rate limit semantics: at most `maxStarts` attempt starts in any interval of length `windowMs`,
 * by the attempts' start times. Starts are counted in buckets of windowMs / RATE_BUCKETS (rounded
 * up to whole ms); a bucket counts for every time t with bucket end > t - windowMs, that is until
 * its end has left the window. A start at t is allowed only if the buckets counted at t hold fewer
 * than maxStarts starts. Every start at s lies in a bucket ending after s, so for any interval
 * [a, a + windowMs] whose last start is at t, every earlier start s in it has s >= a >= t - windowMs
 * and was counted when t was allowed: the bound is exact, never exceeded. What the buckets cost is
 * that a start may wait up to one bucket (1% of the window) longer than an exact sliding log would
 * make it wait.
 */
import type { JobTypeLimits, RateLimit } from "./task.js";

/** Buckets per rate window. */
export const RATE_BUCKETS = 100;

/** True when the job type has any limit (and so is claimed by the limited claim). */
export function hasLimits(limits: JobTypeLimits): boolean {
  return limits.rateLimit !== null || limits.maxRunning !== null || limits.maxRunningPerKey !== null;
}

/** The width of a rate window's buckets (ms). */
export function rateBucketMs(windowMs: number): number {
  return Math.max(1, Math.ceil(windowMs / RATE_BUCKETS));
}

/** Starts counted in one bucket, which counts until `endsAtMs` leaves the window. */
export interface StartBucket {
  endsAtMs: number;
  starts: number;
}

/** The starts that count at `atMs`: those of buckets ending after atMs - windowMs. */
function countedAt(rate: RateLimit, buckets: readonly StartBucket[], atMs: number): StartBucket[] {
  return buckets.filter((b) => b.endsAtMs > atMs - rate.windowMs);
}

/** How many attempts may start at `atMs` (0 or more). */
export function rateAllowance(rate: RateLimit, buckets: readonly StartBucket[], atMs: number): number {
  const counted = countedAt(rate, buckets, atMs).reduce((sum, b) => sum + b.starts, 0);
  return Math.max(0, rate.maxStarts - counted);
}

/**
 * How long after `atMs` the next start is allowed: 0 when one is allowed at atMs, null when none
 * ever is (maxStarts 0). `buckets` must include the starts just made.
 */
export function rateWaitMs(rate: RateLimit, buckets: readonly StartBucket[], atMs: number): number | null {
  if (rate.maxStarts === 0) return null;
  const counted = countedAt(rate, buckets, atMs).sort((a, b) => a.endsAtMs - b.endsAtMs);
  let total = counted.reduce((sum, b) => sum + b.starts, 0);
  if (total < rate.maxStarts) return 0;
  for (const bucket of counted) {
    // This bucket stops counting once atMs + wait - windowMs >= endsAtMs.
    total -= bucket.starts;
    if (total < rate.maxStarts) return bucket.endsAtMs + rate.windowMs - atMs;
  }
  return 0; // unreachable: with every bucket gone the total is 0 < maxStarts
}

/**
 * How many tasks one claim may take: what the caller wants, within the job type's free running
 * slots and the rate allowance (each null when that limit is unset).
 */
export function claimAllowance(params: { want: number; maxRunning: number | null; running: number; rateAllowance: number | null }): number {
  let allowance = params.want;
  if (params.maxRunning !== null) allowance = Math.min(allowance, params.maxRunning - params.running);
  if (params.rateAllowance !== null) allowance = Math.min(allowance, params.rateAllowance);
  return Math.max(0, allowance);
}

/** A concurrency key's pending tasks that a claim may take, best first; key null: tasks without a key. */
export interface ClaimGroup {
  key: string | null;
  /** Its tasks RUNNING now (counted against max_running_per_key). */
  running: number;
  /** Ready tasks in the key's order (priority descending, then FIFO). */
  candidates: readonly { id: string; priority: number }[];
}

/** What a limited claim takes, in the order to hand them out. */
export interface ClaimPick {
  id: string;
  key: string | null;
}

/**
 * Picks at most `allowance` tasks from `groups`, which come in rotation order (the group after the
 * last one served first). Round-robin: every group's best task before any group's second, and so
 * on; within one turn, higher priority first, then rotation order. A group with a key takes at
 * most maxRunningPerKey minus its running tasks; tasks without a key only count against the
 * job-type-wide allowance.
 */
export function planLimitedClaim(params: { groups: readonly ClaimGroup[]; allowance: number; maxRunningPerKey: number | null }): ClaimPick[] {
  const { groups, maxRunningPerKey } = params;
  const takes = groups.map((g) => {
    const cap = g.key === null || maxRunningPerKey === null ? Infinity : Math.max(0, maxRunningPerKey - g.running);
    return Math.min(cap, g.candidates.length);
  });
  const picks: ClaimPick[] = [];
  for (let turn = 0; picks.length < params.allowance; turn++) {
    const round = groups.map((g, i) => ({ g, i })).filter(({ i }) => takes[i]! > turn);
    if (round.length === 0) break;
    round.sort((x, y) => y.g.candidates[turn]!.priority - x.g.candidates[turn]!.priority || x.i - y.i);
    for (const { g } of round) {
      if (picks.length >= params.allowance) break;
      picks.push({ id: g.candidates[turn]!.id, key: g.key });
    }
  }
  return picks;
}
