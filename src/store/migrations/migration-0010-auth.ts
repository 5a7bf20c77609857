import { Migration } from "@mikro-orm/migrations";

/**
 * Tenancy and audit: API keys (only a SHA-256 of each secret is stored), who created namespaces,
 * who caused each task event, and a per-job-type payload limit.
 *
 * A key change (created, revoked, its roles or expiry changed) NOTIFYs `taskwire_keys`, so every
 * replica drops its cached copy at once and a server in development mode starts requiring keys.
 * Recording last use does not notify (the trigger watches other columns only).
 *
 * The event trigger functions (as migrations 0003, 0007 and 0008 left them) are replaced by the same
 * functions plus one column: the actor, read from the transaction-local setting `taskwire.actor`
 * that Cancel and Retry set (`set_config('taskwire.actor', <key id>, true)`); empty or unset gives
 * NULL. One current_setting() per statement, not per row.
 */
export class Migration0010Auth extends Migration {
  override up(): void {
    this.addSql(`alter table "namespace" add column "created_by" text null;`);
    this.addSql(`
create table "api_key" (
  "id" text not null primary key,
  "namespace" text not null,
  "roles" text[] not null,
  "secret_hash" bytea not null,
  "description" text not null default '',
  "created_at" timestamptz not null default now(),
  "created_by" text not null,
  "expires_at" timestamptz null,
  "revoked_at" timestamptz null,
  "revoked_by" text null,
  "last_used_at" timestamptz null,
  constraint "api_key_namespace_foreign" foreign key ("namespace") references "namespace" ("name"),
  constraint "api_key_id_check" check ("id" ~ '^[0-9a-f]{16}$'),
  constraint "api_key_roles_check" check (cardinality("roles") between 1 and 4
    and "roles" <@ array['producer', 'worker', 'watcher', 'admin']::text[]),
  constraint "api_key_secret_hash_check" check (length("secret_hash") = 32),
  constraint "api_key_revoked_check" check (("revoked_at" is null) = ("revoked_by" is null))
);`);
    // ListApiKeys pages a namespace's keys newest first.
    this.addSql(`create index "api_key_namespace_idx" on "api_key" ("namespace", "created_at" desc, "id");`);
    this.addSql(`
create function "taskwire_notify_api_key"() returns trigger language plpgsql as $$
begin
  perform pg_notify('taskwire_keys', json_build_object('id', new."id", 'op', lower(tg_op))::text);
  return null;
end $$;`);
    this.addSql(`
create trigger "api_key_notify" after insert or update of "revoked_at", "expires_at", "roles", "namespace" on "api_key"
for each row execute function "taskwire_notify_api_key"();`);

    this.addSql(`alter table "task_event" add column "actor" text null;`);
    this.addSql(`
alter table "job_type" add column "max_payload_bytes" int null,
  add constraint "job_type_max_payload_check" check ("max_payload_bytes" >= 1);`);

    this.addSql(`
create or replace function "taskwire_events_inserted"() returns trigger language plpgsql as $$
declare
  r record;
  base bigint;
  actor text := nullif(current_setting('taskwire.actor', true), '');
begin
  for r in
    select "namespace" as ns, count(*) + count(*) filter (where "state" = 'running') as n
    from inserted group by 1 order by 1
  loop
    update "namespace" set "event_seq" = "event_seq" + r.n where "name" = r.ns returning "event_seq" - r.n into base;
    insert into "task_event" ("namespace", "seq", "task_id", "job_type", "kind", "state", "previous_state", "attempt", "worker_id", "at", "actor")
    select r.ns, base + row_number() over (order by e.id, e.step), e.id, e.job_type, e.kind, e.state, e.previous_state, e.attempt, e.worker_id, e.at, actor
    from (
      select i."id", 0 as step, i."job_type", 'created' as kind,
        case when i."state" = 'running' then 'pending' else i."state" end as state,
        null::text as previous_state, 0 as attempt, null::text as worker_id, i."created_at" as at
      from inserted i where i."namespace" = r.ns
      union all
      select i."id", 1, i."job_type", 'state_changed', 'running', 'pending', i."attempt", i."worker_id", i."created_at"
      from inserted i where i."namespace" = r.ns and i."state" = 'running'
    ) e;
    perform pg_notify('taskwire_events', json_build_object('ns', r.ns, 'seq', base + r.n)::text);
  end loop;
  return null;
end $$;`);
    // CREATE OR REPLACE drops a function's SET options: enable_nestloop = off (migration 0007) is
    // part of the definition again.
    this.addSql(`
create or replace function "taskwire_events_updated"() returns trigger language plpgsql set enable_nestloop = off as $$
declare
  r record;
  base bigint;
  actor text := nullif(current_setting('taskwire.actor', true), '');
begin
  for r in
    select n."namespace" as ns, count(*) as n
    from new_rows n join old_rows o on o."id" = n."id"
    where n."state" <> o."state" or n."progress" <> o."progress" or n."progress_message" <> o."progress_message"
    group by 1 order by 1
  loop
    update "namespace" set "event_seq" = "event_seq" + r.n where "name" = r.ns returning "event_seq" - r.n into base;
    insert into "task_event" ("namespace", "seq", "task_id", "job_type", "kind", "state", "previous_state", "attempt",
      "progress", "progress_message", "error", "worker_id", "actor")
    select r.ns, base + row_number() over (order by n."id"), n."id", n."job_type",
      case when n."state" <> o."state" then 'state_changed' else 'progress' end,
      n."state", case when n."state" <> o."state" then o."state" end, n."attempt", n."progress", n."progress_message",
      case when n."state" in ('dead', 'cancelled') or (n."state" = 'pending' and o."state" = 'running') then n."last_error" end,
      n."worker_id", actor
    from new_rows n join old_rows o on o."id" = n."id"
    where n."namespace" = r.ns
      and (n."state" <> o."state" or n."progress" <> o."progress" or n."progress_message" <> o."progress_message");
    perform pg_notify('taskwire_events', json_build_object('ns', r.ns, 'seq', base + r.n)::text);
  end loop;
  return null;
end $$;`);
  }

  override down(): void {
    // The functions as migrations 0003, 0007 and 0008 left them, without the actor.
    this.addSql(`
create or replace function "taskwire_events_inserted"() returns trigger language plpgsql as $$
declare
  r record;
  base bigint;
begin
  for r in
    select "namespace" as ns, count(*) + count(*) filter (where "state" = 'running') as n
    from inserted group by 1 order by 1
  loop
    update "namespace" set "event_seq" = "event_seq" + r.n where "name" = r.ns returning "event_seq" - r.n into base;
    insert into "task_event" ("namespace", "seq", "task_id", "job_type", "kind", "state", "previous_state", "attempt", "worker_id", "at")
    select r.ns, base + row_number() over (order by e.id, e.step), e.id, e.job_type, e.kind, e.state, e.previous_state, e.attempt, e.worker_id, e.at
    from (
      select i."id", 0 as step, i."job_type", 'created' as kind,
        case when i."state" = 'running' then 'pending' else i."state" end as state,
        null::text as previous_state, 0 as attempt, null::text as worker_id, i."created_at" as at
      from inserted i where i."namespace" = r.ns
      union all
      select i."id", 1, i."job_type", 'state_changed', 'running', 'pending', i."attempt", i."worker_id", i."created_at"
      from inserted i where i."namespace" = r.ns and i."state" = 'running'
    ) e;
    perform pg_notify('taskwire_events', json_build_object('ns', r.ns, 'seq', base + r.n)::text);
  end loop;
  return null;
end $$;`);
    this.addSql(`
create or replace function "taskwire_events_updated"() returns trigger language plpgsql set enable_nestloop = off as $$
declare
  r record;
  base bigint;
begin
  for r in
    select n."namespace" as ns, count(*) as n
    from new_rows n join old_rows o on o."id" = n."id"
    where n."state" <> o."state" or n."progress" <> o."progress" or n."progress_message" <> o."progress_message"
    group by 1 order by 1
  loop
    update "namespace" set "event_seq" = "event_seq" + r.n where "name" = r.ns returning "event_seq" - r.n into base;
    insert into "task_event" ("namespace", "seq", "task_id", "job_type", "kind", "state", "previous_state", "attempt",
      "progress", "progress_message", "error", "worker_id")
    select r.ns, base + row_number() over (order by n."id"), n."id", n."job_type",
      case when n."state" <> o."state" then 'state_changed' else 'progress' end,
      n."state", case when n."state" <> o."state" then o."state" end, n."attempt", n."progress", n."progress_message",
      case when n."state" in ('dead', 'cancelled') or (n."state" = 'pending' and o."state" = 'running') then n."last_error" end,
      n."worker_id"
    from new_rows n join old_rows o on o."id" = n."id"
    where n."namespace" = r.ns
      and (n."state" <> o."state" or n."progress" <> o."progress" or n."progress_message" <> o."progress_message");
    perform pg_notify('taskwire_events', json_build_object('ns', r.ns, 'seq', base + r.n)::text);
  end loop;
  return null;
end $$;`);
    this.addSql(`alter table "job_type" drop constraint "job_type_max_payload_check", drop column "max_payload_bytes";`);
    this.addSql(`alter table "task_event" drop column "actor";`);
    this.addSql(`drop trigger if exists "api_key_notify" on "api_key";`);
    this.addSql(`drop function if exists "taskwire_notify_api_key"();`);
    this.addSql(`drop table if exists "api_key";`);
    this.addSql(`alter table "namespace" drop column "created_by";`);
  }
}
