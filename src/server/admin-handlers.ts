/**
 * AdminService: namespaces (operators only), API keys and the audit log. An admin manages its own
 * namespace's keys and reads its audit entries; naming another namespace needs an operator (an
 * admin key of namespace "default"). A key of another namespace looks exactly like a missing one
 * (NOT_FOUND).
 */
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { createApiKey, createNamespace, listApiKeys, listAuditEvents, listNamespaces, requireKeyId, requireNamespaceName, revokeApiKey } from "../auth/key-admin.js";
import { MAX_KEY_LIFETIME_MS, MIN_KEY_LIFETIME_MS } from "../core/api-key.js";
import { invalidArgument, TaskwireError } from "../core/errors.js";
import type { ServerLimits } from "../core/limits.js";
import { decodePageKey, decodePageToken, encodePageToken, filterFingerprint, isNamespaceKey } from "../core/page-token.js";
import { isOperator, OPERATOR_NAMESPACE, type Role } from "../core/roles.js";
import type { AdminService } from "../gen/taskwire/v1/admin_pb.js";
import type { Database } from "../store/orm.js";
import type { Authenticator } from "../auth/authenticator.js";
import { apiKeyToProto, auditEventToProto, namespaceToProto, roleFromProto } from "./mapping.js";
import { principalOf } from "./request-context.js";
import { durationMsInRange, pageSize } from "./validation.js";
import { isTaskId } from "../core/task-id.js";

/** The namespace a request is about: the caller's, or another one for an operator. `what` names the act for the refusal. */
function targetNamespace(ctx: HandlerContext, requested: string, what = "managing the keys of another namespace"): string {
  const principal = principalOf(ctx);
  if (requested === "" || requested === principal.namespace) return principal.namespace;
  const name = requireNamespaceName("namespace", requested);
  if (!isOperator(principal)) {
    throw new TaskwireError(
      "PERMISSION_DENIED",
      `${what} needs an operator key (the admin role in namespace "${OPERATOR_NAMESPACE}"); leave namespace empty for your own`,
    );
  }
  return name;
}

/** The AdminService implementation. */
export function createAdminHandlers(database: Pick<Database, "db" | "pool">, auth: Authenticator, limits: ServerLimits): ServiceImpl<typeof AdminService> {
  const { db, pool } = database;
  return {
    async createNamespace(req, ctx) {
      const created = await createNamespace(pool, req.name, principalOf(ctx).actor);
      return { namespace: namespaceToProto(created) };
    },

    async listNamespaces(req, ctx) {
      void ctx;
      const size = pageSize("page_size", req.pageSize, limits);
      const fingerprint = filterFingerprint({ namespaces: true });
      const after = req.pageToken === "" ? null : decodePageKey(req.pageToken, fingerprint, isNamespaceKey);
      const rows = await listNamespaces(db, after, size + 1);
      const page = rows.slice(0, size);
      const last = page.at(-1);
      return {
        namespaces: page.map(namespaceToProto),
        nextPageToken: rows.length > size && last !== undefined ? encodePageToken(last.name, fingerprint) : "",
      };
    },

    async createApiKey(req, ctx) {
      const namespace = targetNamespace(ctx, req.namespace);
      const roles: Role[] = req.roles.map((r, i) => {
        const role = roleFromProto(r);
        if (role === undefined) throw invalidArgument(`roles[${i}]`, `${r} is not a role; use ROLE_PRODUCER, ROLE_WORKER, ROLE_WATCHER or ROLE_ADMIN`);
        return role;
      });
      const expiresInMs = durationMsInRange("expires_in", req.expiresIn, MIN_KEY_LIFETIME_MS, MAX_KEY_LIFETIME_MS);
      const { key, token } = await createApiKey(pool, { namespace, roles, expiresInMs, description: req.description, actor: principalOf(ctx).actor });
      // Development mode ends on this replica before the answer, not when the notification arrives.
      auth.onKeyNotice({ id: key.id, op: "insert" });
      return { key: apiKeyToProto(key), token };
    },

    async listApiKeys(req, ctx) {
      const namespace = targetNamespace(ctx, req.namespace);
      const size = pageSize("page_size", req.pageSize, limits);
      const fingerprint = filterFingerprint({ keys: namespace, inactive: req.includeInactive });
      const afterId = req.pageToken === "" ? null : requireKeyId("page_token", decodePageToken(req.pageToken, fingerprint));
      const rows = await listApiKeys(db, { namespace, includeInactive: req.includeInactive, afterId, limit: size + 1 });
      const page = rows.slice(0, size);
      const last = page.at(-1);
      return {
        keys: page.map(apiKeyToProto),
        nextPageToken: rows.length > size && last !== undefined ? encodePageToken(last.id, fingerprint) : "",
      };
    },

    async revokeApiKey(req, ctx) {
      const principal = principalOf(ctx);
      const id = requireKeyId("id", req.id);
      const key = await revokeApiKey(pool, { id, namespace: isOperator(principal) ? null : principal.namespace, actor: principal.actor });
      // This replica acts at once; the others when the trigger's notification reaches them.
      auth.onKeyNotice({ id: key.id, op: "update" });
      return { key: apiKeyToProto(key) };
    },

    async listAuditEvents(req, ctx) {
      // An operator's empty filter is every namespace; anyone else's is its own.
      const namespace = req.namespace === "" && isOperator(principalOf(ctx)) ? null : targetNamespace(ctx, req.namespace, "reading the audit log of another namespace");
      const size = pageSize("page_size", req.pageSize, limits);
      const fingerprint = filterFingerprint({ audit: namespace });
      const beforeId = req.pageToken === "" ? null : decodePageKey(req.pageToken, fingerprint, isTaskId);
      const rows = await listAuditEvents(db, { namespace, beforeId, limit: size + 1 });
      const page = rows.slice(0, size);
      const last = page.at(-1);
      return {
        events: page.map(auditEventToProto),
        nextPageToken: rows.length > size && last !== undefined ? encodePageToken(last.id, fingerprint) : "",
      };
    },
  };
}
