/** Whether any key works now (not revoked, not expired): decides development mode. */
import type { Db } from "../db.js";

// A scan of a small table; run at start, on key notifications and on a slow timer, never per request.
const SQL = `SELECT EXISTS (SELECT 1 FROM api_key WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())) AS usable`;

/** True when at least one key is usable. */
export async function apiKeyUsableExists(db: Db): Promise<boolean> {
  const [row] = await db.query<{ usable: boolean }>(SQL);
  return row?.usable === true;
}
