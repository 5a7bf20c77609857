/** The database's clock, the one every replica shares (replicas' own clocks may be skewed). */
import type { Db } from "../db.js";
import { toDate } from "./task-columns.js";

// now() is the start of the current transaction: read in a transaction, it is the time every
// statement of that transaction sees (created_at defaults, for instance). No table, no locks.
const SQL = `SELECT now() AS now`;

/** The current transaction's time by the database's clock. */
export async function databaseNow(db: Db): Promise<Date> {
  const [row] = await db.query<{ now: Date | string }>(SQL);
  return toDate(row!.now);
}
