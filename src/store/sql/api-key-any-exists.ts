/**
 * Whether any key was ever created (revoked and expired ones count: keys are never deleted):
 * decides development mode, which must not come back once keys are in use.
 */
import type { Db } from "../db.js";

// Reads at most one row of the primary key index; run at start, on key notifications and on a slow
// timer while no key exists, never per request.
const SQL = `SELECT EXISTS (SELECT 1 FROM api_key) AS any`;

/** True when the api_key table has a row. */
export async function apiKeyAnyExists(db: Db): Promise<boolean> {
  const [row] = await db.query<{ any: boolean }>(SQL);
  return row?.any === true;
}
