import { defineEntity, p } from "@mikro-orm/postgresql";

const ApiKeySchema = defineEntity({
  name: "ApiKey",
  tableName: "api_key",
  properties: {
    id: p.text().primary(),
    namespace: p.text(),
    roles: p.array(),
    secretHash: p.blob(),
    description: p.text().default(""),
    createdAt: p.datetime().defaultRaw("now()"),
    createdBy: p.text(),
    expiresAt: p.datetime().nullable(),
    revokedAt: p.datetime().nullable(),
    revokedBy: p.text().nullable(),
    lastUsedAt: p.datetime().nullable(),
  },
});

/**
 * An API key: bound to one namespace and a set of roles, stored as a SHA-256 of its secret. Written
 * and read only through src/store/sql/api-key-*.ts; the entity exists for schema checks.
 */
export class ApiKey extends ApiKeySchema.class {}
ApiKeySchema.setClass(ApiKey);
