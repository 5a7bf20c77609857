/** CreateApiKey: inserts a key into an existing namespace; the trigger api_key_notify tells every replica. */
import type { ApiKeyRecord } from "../../core/api-key.js";
import type { Role } from "../../core/roles.js";
import type { Db } from "../db.js";
import { API_KEY_COLUMNS, apiKeyFromRow, type ApiKeyRow } from "./api-key-columns.js";

// INSERT ... SELECT from namespace: no row when the namespace does not exist (instead of a foreign
// key error), so the caller answers NOT_FOUND.
const SQL = `
INSERT INTO api_key AS k (id, namespace, roles, secret_hash, description, created_by, expires_at)
SELECT $1, n.name, $3::text[], $4, $5, $6, CASE WHEN $7::bigint IS NULL THEN NULL ELSE now() + $7::bigint * interval '1 millisecond' END
FROM namespace n WHERE n.name = $2
RETURNING ${API_KEY_COLUMNS}`;

/** The fields of a new key. */
export interface NewApiKey {
  id: string;
  namespace: string;
  roles: readonly Role[];
  secretHash: Uint8Array;
  description: string;
  createdBy: string;
  /** Lifetime from now by the database clock; null: never expires. */
  expiresInMs: number | null;
}

/** Inserts the key; undefined when its namespace does not exist. */
export async function apiKeyInsert(db: Db, key: NewApiKey): Promise<ApiKeyRecord | undefined> {
  const [row] = await db.query<ApiKeyRow>(SQL, [
    key.id,
    key.namespace,
    key.roles,
    Buffer.from(key.secretHash),
    key.description,
    key.createdBy,
    key.expiresInMs,
  ]);
  return row === undefined ? undefined : apiKeyFromRow(row);
}
