/**
 * Transaction-scoped advisory locks, each released at commit or rollback. Each purpose has its own
 * lock class (the first key of the two-key form), kept here together so that no two share one.
 *
 * Each lock must be its own statement: the statements after it take their snapshots once it is
 * held, so they see everything the previous holder committed (in READ COMMITTED a statement that
 * waited for the lock inside itself would still read its older snapshot). Two keys whose hashes
 * collide only wait for each other.
 */
import type { Db } from "../db.js";

const LOCK_CLASS = {
  /** The limited claims of one job type, on every replica (src/dispatch/limited-claim.ts). */
  limitedClaim: 1_954_958_413,
  /** Schedule creation in one namespace: its count-then-insert keeps the per-namespace bound. */
  scheduleCreate: 1_954_958_414,
} as const;

const SQL = `SELECT pg_advisory_xact_lock($1::int, hashtext($2))`;

/** Waits until this transaction holds the limited-claim lock of the job type (limited claim, step 1). */
export async function jobTypeLimitLock(db: Db, namespace: string, jobType: string): Promise<void> {
  // Namespace names have no '/', so the hashed text is unambiguous.
  await db.query(SQL, [LOCK_CLASS.limitedClaim, `${namespace}/${jobType}`]);
}

/**
 * Waits until this transaction holds the namespace's schedule-creation lock. Without it, concurrent
 * CreateSchedule calls each counted the same committed rows and all inserted, past the bound.
 */
export async function scheduleCreateLock(db: Db, namespace: string): Promise<void> {
  await db.query(SQL, [LOCK_CLASS.scheduleCreate, namespace]);
}
