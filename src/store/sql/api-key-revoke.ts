/** RevokeApiKey: marks a usable or expired key revoked. The trigger api_key_notify tells every replica. */
import type { ApiKeyRecord } from "../../core/api-key.js";
import type { Db } from "../db.js";
import { API_KEY_COLUMNS, apiKeyFromRow, type ApiKeyRow } from "./api-key-columns.js";

// One row by primary key, locked until the transaction ends. $2 NULL: any namespace (an operator).
// A key already revoked is not touched (no row): its first revocation's time and actor stay, and
// of two concurrent revokes only the first gets a row (the second re-checks revoked_at after the
// lock), so the caller audits each revocation once.
const SQL = `
UPDATE api_key k SET revoked_at = now(), revoked_by = $3
WHERE k.id = $1 AND ($2::text IS NULL OR k.namespace = $2) AND k.revoked_at IS NULL
RETURNING ${API_KEY_COLUMNS}`;

/** Revokes the key; undefined when no unrevoked key of that id exists (in `namespace`, when given). */
export async function apiKeyRevoke(db: Db, params: { id: string; namespace: string | null; actor: string }): Promise<ApiKeyRecord | undefined> {
  const [row] = await db.query<ApiKeyRow>(SQL, [params.id, params.namespace, params.actor]);
  return row === undefined ? undefined : apiKeyFromRow(row);
}
