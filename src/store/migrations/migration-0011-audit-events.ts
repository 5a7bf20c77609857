import { Migration } from "@mikro-orm/migrations";

/**
 * The admin audit log (issue 7's audit, completed): one row per namespace created, API key created
 * and API key revoked, written in the same transaction as the change (src/auth/key-admin.ts), by
 * the AdminService RPCs and the taskwire command alike. Rows are only ever inserted.
 *
 * Numbered 0011, in the block of migration 0010 (auth) it extends. It only adds a table that
 * refers to `namespace` (migration 0001), so it is safe to apply after the later migrations on a
 * database that already has them.
 */
export class Migration0011AuditEvents extends Migration {
  override up(): void {
    this.addSql(`
create table "audit_event" (
  "id" bigint generated always as identity primary key,
  "at" timestamptz not null default now(),
  "action" text not null,
  "namespace" text not null,
  "target" text not null,
  "actor" text not null,
  constraint "audit_event_namespace_foreign" foreign key ("namespace") references "namespace" ("name"),
  constraint "audit_event_action_check" check ("action" in ('namespace_created', 'api_key_created', 'api_key_revoked'))
);`);
    // ListAuditEvents pages one namespace's entries newest first; all namespaces' go by the primary key.
    this.addSql(`create index "audit_event_namespace_idx" on "audit_event" ("namespace", "id" desc);`);
  }

  override down(): void {
    this.addSql(`drop table if exists "audit_event";`);
  }
}
