/** ListApiKeys: a namespace's keys newest first (api_key_namespace_idx), optionally only the usable ones. */
import type { ApiKeyRecord } from "../../core/api-key.js";
import type { Db } from "../db.js";
import { API_KEY_COLUMNS, apiKeyFromRow, type ApiKeyRow } from "./api-key-columns.js";

// Keyset paging on (created_at, id) descending: the cursor is the id of the previous page's last key
// (keys are never deleted), whose created_at is read here at full precision.
const SQL = `
SELECT ${API_KEY_COLUMNS} FROM api_key k
WHERE k.namespace = $1
  AND ($2 OR (k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())))
  AND ($3::text IS NULL OR (k.created_at, k.id) < (SELECT c.created_at, c.id FROM api_key c WHERE c.id = $3))
ORDER BY k.created_at DESC, k.id DESC
LIMIT $4`;

/** One page of keys after the key `afterId` (the previous page's last). */
export async function apiKeyList(
  db: Db,
  params: { namespace: string; includeInactive: boolean; afterId: string | null; limit: number },
): Promise<ApiKeyRecord[]> {
  const rows = await db.query<ApiKeyRow>(SQL, [
    params.namespace,
    params.includeInactive,
    params.afterId,
    params.limit,
  ]);
  return rows.map(apiKeyFromRow);
}
