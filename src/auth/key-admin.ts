/**
 * Namespace and key management, shared by the AdminService RPCs and the `taskwire namespace` /
 * `taskwire keys` commands (which work on the database directly, so a fresh install can create
 * its first key). Every change records its actor on its row and, in the same transaction, an entry
 * in the audit log (audit_event).
 */
import { createHash, randomBytes } from "node:crypto";
import type pg from "pg";
import { MAX_KEY_DESCRIPTION_CHARS, MAX_KEY_LIFETIME_MS, MIN_KEY_LIFETIME_MS, type ApiKeyRecord } from "../core/api-key.js";
import { formatToken, KEY_ID_PATTERN } from "../core/api-key-token.js";
import { invalidArgument, TaskwireError } from "../core/errors.js";
import { checkNamespaceName } from "../core/names.js";
import type { AuditRecord } from "../core/audit.js";
import type { Role } from "../core/roles.js";
import type { Db } from "../store/db.js";
import { withTransaction } from "../store/orm.js";
import { apiKeyGet } from "../store/sql/api-key-get.js";
import { apiKeyInsert } from "../store/sql/api-key-insert.js";
import { apiKeyList } from "../store/sql/api-key-list.js";
import { apiKeyRevoke } from "../store/sql/api-key-revoke.js";
import { namespaceInsert, type NamespaceRecord } from "../store/sql/namespace-insert.js";
import { namespaceList } from "../store/sql/namespace-list.js";
import { auditEventInsert } from "../store/sql/audit-event-insert.js";
import { auditEventList } from "../store/sql/audit-event-list.js";

/** A namespace name, or INVALID_ARGUMENT naming the field. */
export function requireNamespaceName(field: string, name: string): string {
  const problem = checkNamespaceName(name);
  if (problem !== undefined) throw invalidArgument(field, problem);
  return name;
}

/** A key id, or INVALID_ARGUMENT naming the field. */
export function requireKeyId(field: string, id: string): string {
  if (!KEY_ID_PATTERN.test(id)) {
    throw invalidArgument(field, `${JSON.stringify(id.slice(0, 40))} is not a key id; ids are the 16 hex digits after "tw_" in the token`);
  }
  return id;
}

/** Creates a namespace; ALREADY_EXISTS when the name is taken. */
export async function createNamespace(pool: pg.Pool, name: string, actor: string): Promise<NamespaceRecord> {
  const valid = requireNamespaceName("name", name);
  return withTransaction(pool, async (db) => {
    const created = await namespaceInsert(db, valid, actor);
    if (created === undefined) throw new TaskwireError("ALREADY_EXISTS", `namespace ${JSON.stringify(name)} already exists`);
    await auditEventInsert(db, { action: "namespace_created", namespace: created.name, target: created.name, actor });
    return created;
  });
}

/** One page of namespaces by name. */
export function listNamespaces(db: Db, afterName: string | null, limit: number): Promise<NamespaceRecord[]> {
  return namespaceList(db, afterName, limit);
}

/** What a new key is for. */
export interface NewKeyRequest {
  namespace: string;
  roles: readonly Role[];
  /** Null: never expires. */
  expiresInMs: number | null;
  description: string;
  actor: string;
}

/**
 * Creates a key and returns it with its token, the only time the token exists outside the caller:
 * only the SHA-256 of its secret (32 random bytes) is stored.
 */
export async function createApiKey(pool: pg.Pool, request: NewKeyRequest): Promise<{ key: ApiKeyRecord; token: string }> {
  const namespace = requireNamespaceName("namespace", request.namespace);
  if (request.roles.length === 0) throw invalidArgument("roles", "is empty; give at least one of producer, worker, watcher, admin");
  if (request.expiresInMs !== null && !(request.expiresInMs >= MIN_KEY_LIFETIME_MS && request.expiresInMs <= MAX_KEY_LIFETIME_MS)) {
    throw invalidArgument("expires_in", `is ${request.expiresInMs} ms; allowed: ${MIN_KEY_LIFETIME_MS} ms to ${MAX_KEY_LIFETIME_MS} ms (3650 days)`);
  }
  if (request.description.length > MAX_KEY_DESCRIPTION_CHARS) {
    throw invalidArgument("description", `is ${request.description.length} characters; the limit is ${MAX_KEY_DESCRIPTION_CHARS}`);
  }
  if (request.description.includes("\u0000")) throw invalidArgument("description", "contains a NUL character, which text fields cannot hold");
  const id = randomBytes(8).toString("hex");
  const secret = randomBytes(32).toString("base64url");
  const key = await withTransaction(pool, async (db) => {
    const inserted = await apiKeyInsert(db, {
      id,
      namespace,
      roles: [...new Set(request.roles)],
      secretHash: createHash("sha256").update(secret).digest(),
      description: request.description,
      createdBy: request.actor,
      expiresInMs: request.expiresInMs,
    });
    if (inserted === undefined) throw new TaskwireError("NOT_FOUND", `namespace ${JSON.stringify(namespace)} does not exist; create it first (taskwire namespace create ${namespace})`);
    await auditEventInsert(db, { action: "api_key_created", namespace, target: id, actor: request.actor });
    return inserted;
  });
  return { key, token: formatToken(id, secret) };
}

/** A namespace's keys, newest first. */
export function listApiKeys(
  db: Db,
  params: { namespace: string; includeInactive: boolean; afterId: string | null; limit: number },
): Promise<ApiKeyRecord[]> {
  return apiKeyList(db, params);
}

/**
 * Revokes a key (in `namespace`, or any when null); NOT_FOUND when there is no such key there,
 * which is also what a key of another namespace looks like. A key already revoked is answered as it
 * is, and its revocation is not recorded again.
 */
export async function revokeApiKey(pool: pg.Pool, params: { id: string; namespace: string | null; actor: string }): Promise<ApiKeyRecord> {
  const id = requireKeyId("id", params.id);
  return withTransaction(pool, async (db) => {
    const revoked = await apiKeyRevoke(db, { ...params, id });
    if (revoked !== undefined) {
      await auditEventInsert(db, { action: "api_key_revoked", namespace: revoked.namespace, target: id, actor: params.actor });
      return revoked;
    }
    const existing = await apiKeyGet(db, id);
    if (existing === undefined || (params.namespace !== null && existing.namespace !== params.namespace)) {
      throw new TaskwireError("NOT_FOUND", `API key ${id} does not exist`);
    }
    return existing;
  });
}

/** One page of the audit log, newest first: of `namespace`, or of every namespace (null). */
export function listAuditEvents(db: Db, params: { namespace: string | null; beforeId: string | null; limit: number }): Promise<AuditRecord[]> {
  return auditEventList(db, params);
}
