/**
 * Token-bucket arithmetic for the submit rate limit: a bucket holds up to `burst` tokens and
 * refills at `ratePerSec`; a submit of n tasks takes n tokens or is refused, with the wait after
 * which it would pass. Pure: the caller keeps the buckets and passes the clock.
 */

/** One bucket's state: tokens left at time `at` (ms). */
export interface Bucket {
  tokens: number;
  at: number;
}

/** The bucket's shape. */
export interface BucketRule {
  ratePerSec: number;
  burst: number;
}

/** A new, full bucket. */
export function fullBucket(rule: BucketRule, now: number): Bucket {
  return { tokens: rule.burst, at: now };
}

/** The outcome of taking tokens. */
export type Take = { ok: true } | { ok: false; retryAfterMs: number; never: boolean };

/**
 * Takes `cost` tokens if the bucket has them (mutating it), after refilling it up to `now`.
 * `never`: the cost exceeds the burst, so no wait would help.
 */
export function takeTokens(bucket: Bucket, rule: BucketRule, cost: number, now: number): Take {
  const elapsed = Math.max(0, now - bucket.at);
  bucket.tokens = Math.min(rule.burst, bucket.tokens + (elapsed * rule.ratePerSec) / 1000);
  bucket.at = Math.max(bucket.at, now);
  if (cost <= bucket.tokens) {
    bucket.tokens -= cost;
    return { ok: true };
  }
  if (cost > rule.burst) return { ok: false, retryAfterMs: Infinity, never: true };
  return { ok: false, retryAfterMs: Math.ceil(((cost - bucket.tokens) * 1000) / rule.ratePerSec), never: false };
}

/** True when a bucket left alone since `bucket.at` is full again by `now` (it can be forgotten). */
export function isFull(bucket: Bucket, rule: BucketRule, now: number): boolean {
  return bucket.tokens + ((now - bucket.at) * rule.ratePerSec) / 1000 >= rule.burst;
}
