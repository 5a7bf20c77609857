/** How many schedules a namespace has (the per-namespace bound at CreateSchedule). */
import type { Db } from "../db.js";

// Served by the primary key's leading column.
const SQL = `SELECT count(*)::int AS n FROM schedule WHERE namespace = $1`;

/** The namespace's number of schedules. */
export async function scheduleCount(db: Db, namespace: string): Promise<number> {
  const [row] = await db.query<{ n: number }>(SQL, [namespace]);
  return row!.n;
}
