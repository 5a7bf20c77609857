/**
 * The bearer token of an API key: `tw_<id>_<secret>`. The id (16 hex digits) is public and finds
 * the key; only a SHA-256 of the secret (at least 32 random bytes, base64url) is stored.
 */

/** Key ids: 16 lower-case hex digits (CHECK in migration 0010). */
export const KEY_ID_PATTERN = /^[0-9a-f]{16}$/;

/** base64url of 32 bytes is 43 characters; longer secrets are accepted, shorter ones never issued. */
const SECRET_PATTERN = /^[A-Za-z0-9_-]{43,200}$/;

/** A token's parts. */
export interface TokenParts {
  id: string;
  secret: string;
}

/** The token for a key id and secret. */
export function formatToken(id: string, secret: string): string {
  return `tw_${id}_${secret}`;
}

/** The parts of a well-formed token, or undefined (the secret may itself contain '_'). */
export function parseToken(token: string): TokenParts | undefined {
  if (!token.startsWith("tw_") || token.length > 260) return undefined;
  const id = token.slice(3, 19);
  if (!KEY_ID_PATTERN.test(id) || token[19] !== "_") return undefined;
  const secret = token.slice(20);
  return SECRET_PATTERN.test(secret) ? { id, secret } : undefined;
}

/** The token of an `Authorization` header value ("Bearer <token>", scheme case-insensitive), or undefined. */
export function bearerToken(header: string | null): string | undefined {
  if (header === null) return undefined;
  const match = /^bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return match?.[1];
}
