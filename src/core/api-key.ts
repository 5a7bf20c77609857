/** API keys as the domain sees them: who they belong to, what they may do, and whether they still work. */
import type { Role } from "./roles.js";

/** A stored key (never its secret, only the secret's SHA-256). */
export interface ApiKeyRecord {
  id: string;
  namespace: string;
  roles: Role[];
  secretHash: Uint8Array;
  description: string;
  createdAt: Date;
  createdBy: string;
  expiresAt: Date | null;
  revokedAt: Date | null;
  revokedBy: string | null;
  lastUsedAt: Date | null;
}

/** Who did an operation, for audit columns: a key id, "cli" (the taskwire command on the database) or "dev" (development mode). */
export type Actor = string;

/** The actor of the taskwire CLI working on the database directly. */
export const CLI_ACTOR = "cli";
/** The actor of a request without a key in development mode. */
export const DEV_ACTOR = "dev";

/** Why a stored key does not work at `now` (revoked, expired), or undefined when it does. */
export function keyUnusableReason(key: Pick<ApiKeyRecord, "id" | "expiresAt" | "revokedAt">, now: number): string | undefined {
  if (key.revokedAt !== null) return `API key ${key.id} was revoked at ${key.revokedAt.toISOString()}`;
  if (key.expiresAt !== null && key.expiresAt.getTime() <= now) return `API key ${key.id} expired at ${key.expiresAt.toISOString()}`;
  return undefined;
}

/** Longest key lifetime (ms): 3650 days. */
export const MAX_KEY_LIFETIME_MS = 3_650 * 24 * 60 * 60 * 1_000;
/** Shortest key lifetime (ms). */
export const MIN_KEY_LIFETIME_MS = 1_000;
/** Longest key description. */
export const MAX_KEY_DESCRIPTION_CHARS = 200;
