/**
 * Opaque page tokens for keyset pagination. A token carries the last id of the previous page and a
 * fingerprint of the filters it was made for, so it cannot be replayed with other filters.
 */
import { createHash } from "node:crypto";
import { invalidArgument } from "./errors.js";

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
  if (typeof parsed !== "object" || parsed === null || typeof (parsed as { k?: unknown }).k !== "string") {
    throw invalidArgument("page_token", "is not a token this server issued; pass next_page_token from the previous response, or empty for the first page");
  }
  const { k, f } = parsed as { k: string; f?: unknown };
  if (f !== fingerprint) {
    throw invalidArgument("page_token", "was issued for different filters; repeat the request with the same filters, or start again with an empty token");
  }
  return k;
}
