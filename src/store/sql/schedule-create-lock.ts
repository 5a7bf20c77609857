/** Serialises schedule creation in one namespace, so its count-then-insert keeps the per-namespace bound. */
import type { Db } from "../db.js";

/** Advisory-lock class of schedule creation (the two-key form; no other lock of Taskwire uses it). */
const SCHEDULE_CREATE_LOCK = 1_954_958_414;

// A transaction-scoped advisory lock on the namespace, released at commit or rollback. Without it,
// concurrent CreateSchedule calls each counted the same committed rows and all inserted, past the
// bound. It must be its own statement: the count after it takes its snapshot once the lock is held,
// so it sees the previous holder's insert (READ COMMITTED). Namespaces whose hashes collide only
// create their schedules one at a time.
const SQL = `SELECT pg_advisory_xact_lock(${SCHEDULE_CREATE_LOCK}, hashtext($1))`;

/** Waits until this transaction holds the namespace's schedule-creation lock. */
export async function scheduleCreateLock(db: Db, namespace: string): Promise<void> {
  await db.query(SQL, [namespace]);
}
