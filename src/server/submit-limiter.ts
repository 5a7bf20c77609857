/**
 * The submit rate limit: one token bucket per API key on this replica (so N replicas allow up to N
 * times the rate in total). A task costs one token; a refused submit says how long to wait.
 */
import type { Principal } from "../auth/principal.js";
import { TaskwireError } from "../core/errors.js";
import { LIMIT_SPECS } from "../core/limits.js";
import { fullBucket, isFull, takeTokens, type Bucket, type BucketRule } from "../core/token-bucket.js";

/** Token buckets by limit key. */
export class SubmitLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly rule: BucketRule) {
    // Full buckets are forgotten (a new one starts full anyway), so memory follows active keys only.
    this.timer = setInterval(() => this.forgetFull(), 60_000);
    this.timer.unref();
  }

  /** Takes `tasks` tokens from the caller's bucket, or throws RESOURCE_EXHAUSTED naming the limit. */
  take(principal: Principal, tasks: number): void {
    const now = Date.now();
    let bucket = this.buckets.get(principal.limitKey);
    if (bucket === undefined) {
      bucket = fullBucket(this.rule, now);
      this.buckets.set(principal.limitKey, bucket);
    }
    const taken = takeTokens(bucket, this.rule, tasks, now);
    if (taken.ok) return;
    const who = principal.keyId === null ? "this caller" : `API key ${principal.keyId}`;
    const limit = `${LIMIT_SPECS.submitRatePerSec.flag} ${this.rule.ratePerSec} tasks/s, ${LIMIT_SPECS.submitBurst.flag} ${this.rule.burst}`;
    if (taken.never) {
      throw new TaskwireError("RESOURCE_EXHAUSTED", `submit rate limit: ${tasks} tasks at once is more than the burst ${who} may submit (${limit}); send smaller batches`);
    }
    throw new TaskwireError("RESOURCE_EXHAUSTED", `submit rate limit of ${who} reached (${limit}); retry in ${taken.retryAfterMs} ms`);
  }

  /** Stops the cleanup timer. */
  stop(): void {
    clearInterval(this.timer);
  }

  private forgetFull(): void {
    const now = Date.now();
    for (const [key, bucket] of this.buckets) if (isFull(bucket, this.rule, now)) this.buckets.delete(key);
  }
}
