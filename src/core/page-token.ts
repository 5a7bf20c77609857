/**
 * Opaque page tokens for keyset pagination. A token carries the last id of the previous page and a
 * fingerprint of the filters it was made for, so it cannot be replayed with other filters.
 */
import { createHash } from "node:crypto";
import { invalidArgument, type TaskwireError } from "./errors.js";
import { checkName, checkNamespaceName } from "./names.js";

/** A fingerprint of a request's filters (any JSON-serializable value). */
export function filterFingerprint(filters: unknown): string {
  return createHash("sha256").update(JSON.stringify(filters)).digest("base64url").slice(0, 16);
}

/** Encodes the position after `lastKey` for the given filters. */
export function encodePageToken(lastKey: string, fingerprint: string): string {
  return Buffer.from(JSON.stringify({ k: lastKey, f: fingerprint })).toString("base64url");
}

/** Decodes a page token, or throws INVALID_ARGUMENT when it is malformed or was made for other filters. */
export function decodePageToken(token: string, fingerprint: string): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    parsed = undefined;
  }
  if (typeof parsed !== "object" || parsed === null || typeof (parsed as { k?: unknown }).k !== "string") throw notIssued();
  const { k, f } = parsed as { k: string; f?: unknown };
  if (f !== fingerprint) {
    throw invalidArgument("page_token", "was issued for different filters; repeat the request with the same filters, or start again with an empty token");
  }
  return k;
}

/**
 * Decodes a page token whose key must pass `isValidKey`, the check the key's own field gets.
 * Fingerprints are not secret, so anyone can forge a token: an unchecked key would reach the
 * database, which fails on it as INTERNAL or UNAVAILABLE (a NUL byte, an id out of bigint range)
 * instead of telling the client its token is wrong.
 */
export function decodePageKey(token: string, fingerprint: string, isValidKey: (key: string) => boolean): string {
  const key = decodePageToken(token, fingerprint);
  if (!isValidKey(key)) throw notIssued();
  return key;
}

/** A key that can be a job type, schedule or worker name. */
export function isNameKey(key: string): boolean {
  return checkName(key) === undefined;
}

/** A key that can be a namespace name. */
export function isNamespaceKey(key: string): boolean {
  return checkNamespaceName(key) === undefined;
}

/** The refusal of a token this server cannot have made. */
function notIssued(): TaskwireError {
  return invalidArgument("page_token", "is not a token this server issued; pass next_page_token from the previous response, or empty for the first page");
}
