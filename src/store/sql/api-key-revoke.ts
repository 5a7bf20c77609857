/** RevokeApiKey: marks a key revoked (once; a second revoke keeps the first time and actor). The trigger api_key_notify tells every replica. */
import type { ApiKeyRecord } from "../../core/api-key.js";
import type { Db } from "../db.js";
import { API_KEY_COLUMNS, apiKeyFromRow, type ApiKeyRow } from "./api-key-columns.js";

// $2 NULL: any namespace (an operator). COALESCE keeps an earlier revocation as it was.
const SQL = `
UPDATE api_key k SET revoked_at = coalesce(k.revoked_at, now()), revoked_by = coalesce(k.revoked_by, $3)
WHERE k.id = $1 AND ($2::text IS NULL OR k.namespace = $2)
RETURNING ${API_KEY_COLUMNS}`;

/** Revokes the key; undefined when no key of that id exists (in `namespace`, when given). */
export async function apiKeyRevoke(db: Db, params: { id: string; namespace: string | null; actor: string }): Promise<ApiKeyRecord | undefined> {
  const [row] = await db.query<ApiKeyRow>(SQL, [params.id, params.namespace, params.actor]);
  return row === undefined ? undefined : apiKeyFromRow(row);
}
