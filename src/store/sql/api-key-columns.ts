/** The api_key columns the api-key-* statements return, and their mapping to ApiKeyRecord. */
import type { ApiKeyRecord } from "../../core/api-key.js";
import type { Role } from "../../core/roles.js";
import { toDate } from "./task-columns.js";

/** Selected by every api_key query (alias `k`). */
export const API_KEY_COLUMNS = `k.id, k.namespace, k.roles, k.secret_hash, k.description, k.created_at, k.created_by,
  k.expires_at, k.revoked_at, k.revoked_by, k.last_used_at`;

/** A row of API_KEY_COLUMNS. */
export interface ApiKeyRow {
  id: string;
  namespace: string;
  roles: string[];
  secret_hash: Buffer;
  description: string;
  created_at: Date | string;
  created_by: string;
  expires_at: Date | string | null;
  revoked_at: Date | string | null;
  revoked_by: string | null;
  last_used_at: Date | string | null;
}

/** Maps a row to the domain record. */
export function apiKeyFromRow(row: ApiKeyRow): ApiKeyRecord {
  return {
    id: row.id,
    namespace: row.namespace,
    roles: row.roles as Role[],
    secretHash: new Uint8Array(row.secret_hash),
    description: row.description,
    createdAt: toDate(row.created_at),
    createdBy: row.created_by,
    expiresAt: toDate(row.expires_at),
    revokedAt: toDate(row.revoked_at),
    revokedBy: row.revoked_by,
    lastUsedAt: toDate(row.last_used_at),
  };
}
