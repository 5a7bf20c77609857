/**
 * Bounded retries of work that PostgreSQL aborted to break a lock cycle (deadlock_detected) or a
 * serialization conflict: the aborted statement or transaction changed nothing, so running it
 * again is safe. Only these two errors are retried; anything else is thrown at once, and so is
 * the last conflict.
 */

/** SQLSTATEs of an aborted, harmless-to-repeat attempt. */
const LOCK_CONFLICTS = new Set(["40P01", "40001"]);

/** True for a deadlock or serialization failure. */
export function isLockConflict(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && LOCK_CONFLICTS.has(code);
}

/** Runs `work` up to `attempts` times while it fails with a lock conflict. */
export async function withLockRetries<T>(work: () => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (error) {
      if (attempt >= attempts || !isLockConflict(error)) throw error;
    }
  }
}
