/**
 * Names who acts in this transaction: the event triggers (migration 0010) record it on the events
 * its statements write. Transaction-local, so a pooled connection never carries it further.
 */
import type { Db } from "../db.js";

export async function setActor(db: Db, actor: string): Promise<void> {
  await db.query("SELECT set_config('taskwire.actor', $1, true)", [actor]);
}
