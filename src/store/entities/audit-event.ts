import { defineEntity, p } from "@mikro-orm/postgresql";

const AuditEventSchema = defineEntity({
  name: "AuditEvent",
  tableName: "audit_event",
  properties: {
    id: p.bigint("string").primary().generated("identity"),
    at: p.datetime().defaultRaw("now()"),
    action: p.text(),
    namespace: p.text(),
    target: p.text(),
    actor: p.text(),
  },
});

/**
 * One entry of the admin audit log: who created a namespace, or created or revoked a key. Written
 * and read only through src/store/sql/audit-event-*.ts; the entity exists for schema checks.
 */
export class AuditEvent extends AuditEventSchema.class {}
AuditEventSchema.setClass(AuditEvent);
