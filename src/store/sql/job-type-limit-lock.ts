/** The limited claim, step 1: serialises the limited claims of one job type across all replicas. */
import type { Db } from "../db.js";

/** Advisory-lock class of the limited claims (the two-key form; no other lock of Taskwire uses it). */
const LIMITED_CLAIM_LOCK = 1_954_958_413;

// A transaction-scoped advisory lock on (namespace, job type), released at commit or rollback. It
// must be its own statement: the statements after it take their snapshots once it is held, so they
// see everything the previous holder committed (in READ COMMITTED a statement that waited for the
// lock inside itself would still read its older snapshot). Two job types whose hashes collide only
// share a queue. Namespace names have no '/', so the hashed text is unambiguous.
const SQL = `SELECT pg_advisory_xact_lock(${LIMITED_CLAIM_LOCK}, hashtext($1 || '/' || $2))`;

/** Waits until this transaction holds the limited-claim lock of the job type. */
export async function jobTypeLimitLock(db: Db, namespace: string, jobType: string): Promise<void> {
  await db.query(SQL, [namespace, jobType]);
}
