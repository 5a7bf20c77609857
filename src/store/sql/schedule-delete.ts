/** DeleteSchedule. The tasks it created keep its name and their fire times. */
import type { Db } from "../db.js";

const SQL = `DELETE FROM schedule WHERE namespace = $1 AND name = $2 RETURNING name`;

/** Deletes the schedule; false when there was none. */
export async function scheduleDelete(db: Db, namespace: string, name: string): Promise<boolean> {
  return (await db.query<{ name: string }>(SQL, [namespace, name])).length > 0;
}
