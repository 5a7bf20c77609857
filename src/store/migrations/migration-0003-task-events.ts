import { Migration } from "@mikro-orm/migrations";

/**
 * Durable task events. Two statement-level triggers on task are the one place that writes them:
 * whatever statement creates a task or changes its state or progress, its events are written in
 * the same transaction. Sequence numbers come from a per-namespace counter whose row lock is held
 * until commit, so events become visible in sequence order: a watcher reading `seq > cursor` never
 * skips one that commits later. Namespaces are locked in name order (no deadlocks between
 * statements that touch several). A NOTIFY (namespace, highest sequence) tells every replica.
 */
export class Migration0003TaskEvents extends Migration {
  override up(): void {
    this.addSql(`alter table "namespace" add column "event_seq" bigint not null default 0;`);
    this.addSql(`
create table "task_event" (
  "namespace" text not null,
  "seq" bigint not null,
  "task_id" bigint not null,
  "job_type" text not null,
  "kind" text not null,
  "state" text not null,
  "previous_state" text null,
  "attempt" int not null,
  "progress" double precision not null default 0,
  "progress_message" text not null default '',
  "error" text null,
  "worker_id" text null,
  "at" timestamptz not null default now(),
  primary key ("namespace", "seq"),
  constraint "task_event_task_id_foreign" foreign key ("task_id") references "task" ("id") on delete cascade,
  constraint "task_event_kind_check" check ("kind" in ('created', 'state_changed', 'progress'))
);`);
    // Events are pruned with their tasks (ON DELETE CASCADE), found through this index.
    this.addSql(`create index "task_event_task_idx" on "task_event" ("task_id", "seq");`);

    this.addSql(`
create function "taskwire_events_inserted"() returns trigger language plpgsql as $$
declare
  r record;
  base bigint;
begin
  for r in select "namespace" as ns, count(*) as n from inserted group by 1 order by 1 loop
    update "namespace" set "event_seq" = "event_seq" + r.n where "name" = r.ns returning "event_seq" - r.n into base;
    insert into "task_event" ("namespace", "seq", "task_id", "job_type", "kind", "state", "attempt", "at")
    select r.ns, base + row_number() over (order by i."id"), i."id", i."job_type", 'created', i."state", i."attempt", i."created_at"
    from inserted i where i."namespace" = r.ns;
    perform pg_notify('taskwire_events', json_build_object('ns', r.ns, 'seq', base + r.n)::text);
  end loop;
  return null;
end $$;`);
    this.addSql(`
create trigger "task_events_inserted" after insert on "task"
referencing new table as inserted for each statement execute function "taskwire_events_inserted"();`);

    this.addSql(`
create function "taskwire_events_updated"() returns trigger language plpgsql as $$
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
    this.addSql(`
create trigger "task_events_updated" after update on "task"
referencing old table as old_rows new table as new_rows for each statement execute function "taskwire_events_updated"();`);
  }

  override down(): void {
    this.addSql(`drop trigger if exists "task_events_updated" on "task";`);
    this.addSql(`drop trigger if exists "task_events_inserted" on "task";`);
    this.addSql(`drop function if exists "taskwire_events_updated"(), "taskwire_events_inserted"();`);
    this.addSql(`drop table if exists "task_event";`);
    this.addSql(`alter table "namespace" drop column "event_seq";`);
  }
}
