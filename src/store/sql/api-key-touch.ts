/** Records when keys were last used: one statement for every key used since the last flush (coalesced per replica). */
import type { Db } from "../db.js";

// GREATEST: replicas flush independently, and an older time never overwrites a newer one. This
// UPDATE touches only last_used_at, so the api_key_notify trigger does not fire.
const SQL = `
UPDATE api_key k SET last_used_at = greatest(k.last_used_at, u.at)
FROM unnest($1::text[], $2::timestamptz[]) AS u(id, at)
WHERE k.id = u.id`;

/** Writes the last-use times. */
export async function apiKeyTouch(db: Db, uses: ReadonlyMap<string, Date>): Promise<void> {
  if (uses.size === 0) return;
  await db.query(SQL, [[...uses.keys()], [...uses.values()]]);
}
