/** Retry delays: exponential backoff with full jitter, pure and deterministic given `random`. */

/** How long to wait before retrying. */
export interface BackoffPolicy {
  /** Delay before the second attempt, before jitter. 0 retries at once. */
  baseMs: number;
  /** Upper bound of any delay. */
  capMs: number;
}

/** The default policy: 1 s doubling up to 10 minutes. */
export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 1_000, capMs: 600_000 };

/**
 * The delay after `attempt` (from 1) failed (its SQL twin, taskwire_backoff_ms in migration 0002,
 * is what the store runs; test/store/backoff-sql.test.ts keeps the two equal): a uniformly random value in [d/2, d], where
 * d = min(cap, base * 2^(attempt-1)). Half the delay is kept so retries are never immediate by
 * accident, the other half spreads a burst of failures apart.
 */
export function backoffDelayMs(policy: BackoffPolicy, attempt: number, random: () => number = Math.random): number {
  const exponent = Math.min(Math.max(attempt - 1, 0), 52);
  const ceiling = Math.min(policy.capMs, policy.baseMs * 2 ** exponent);
  return Math.round(ceiling / 2 + (ceiling / 2) * random());
}
