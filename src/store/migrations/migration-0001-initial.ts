import { Migration } from "@mikro-orm/migrations";

/**
 * The first schema: namespaces, job types, tasks with their attempt history, workers, and the
 * NOTIFY triggers that wake dispatchers. Raw SQL only (never the EntityManager), so what runs is
 * exactly what is reviewed. The CHECK constraints mirror src/core/task-state.ts.
 */
export class Migration0001Initial extends Migration {
  override up(): void {
    this.addSql(`
create table "namespace" (
  "name" text not null primary key,
  "created_at" timestamptz not null default now(),
  constraint "namespace_name_check" check ("name" ~ '^[a-z][a-z0-9_-]{0,62}$')
);`);
    this.addSql(`insert into "namespace" ("name") values ('default');`);

    this.addSql(`
create table "job_type" (
  "namespace" text not null,
  "name" text not null,
  "input_type" text not null default '',
  "output_type" text not null default '',
  "descriptors" bytea null,
  "default_priority" int not null default 0,
  "default_max_attempts" int not null default 3,
  "default_timeout_ms" int null,
  "created_at" timestamptz not null default now(),
  "updated_at" timestamptz not null default now(),
  primary key ("namespace", "name"),
  constraint "job_type_namespace_foreign" foreign key ("namespace") references "namespace" ("name"),
  constraint "job_type_defaults_check" check ("default_priority" between -1000 and 1000
    and "default_max_attempts" between 1 and 1000 and ("default_timeout_ms" is null or "default_timeout_ms" > 0))
);`);

    // No foreign keys from task to namespace/job_type: Submit validates both, job types are never
    // deleted, and an FK check per inserted row would share-lock one hot job_type row.
    this.addSql(`
create table "task" (
  "id" bigint generated always as identity primary key,
  "namespace" text not null,
  "job_type" text not null,
  "state" text not null default 'pending',
  "input_type_url" text not null,
  "input" bytea not null,
  "output_type_url" text null,
  "output" bytea null,
  "priority" int not null,
  "attempt" int not null default 0,
  "max_attempts" int not null,
  "timeout_ms" int null,
  "run_at" timestamptz not null default now(),
  "worker_id" text null,
  "lease_token" uuid null,
  "last_error" text null,
  "created_at" timestamptz not null default now(),
  "updated_at" timestamptz not null default now(),
  "finished_at" timestamptz null,
  constraint "task_state_check" check ("state" in ('waiting', 'pending', 'running', 'succeeded', 'dead', 'cancelled')),
  constraint "task_finished_check" check (("finished_at" is not null) = ("state" in ('succeeded', 'dead', 'cancelled'))),
  constraint "task_lease_check" check (("lease_token" is not null) = ("state" = 'running')),
  constraint "task_attempt_check" check ("attempt" >= 0 and "attempt" <= "max_attempts" and "max_attempts" between 1 and 1000)
);`);
    // The claim order, over ready rows only: it stays small however many tasks have finished.
    this.addSql(`create index "task_claim_idx" on "task" ("namespace", "job_type", "priority" desc, "run_at", "id") where "state" = 'pending';`);
    // ListTasks pages newest first within a namespace.
    this.addSql(`create index "task_namespace_id_idx" on "task" ("namespace", "id" desc);`);
    this.addSql(`create index "task_worker_idx" on "task" ("namespace", "worker_id") where "worker_id" is not null;`);

    this.addSql(`
create table "task_attempt" (
  "task_id" bigint not null,
  "number" int not null,
  "worker_id" text not null,
  "outcome" text not null default 'running',
  "error" text null,
  "started_at" timestamptz not null default now(),
  "ended_at" timestamptz null,
  primary key ("task_id", "number"),
  constraint "task_attempt_task_id_foreign" foreign key ("task_id") references "task" ("id") on delete cascade,
  constraint "task_attempt_number_check" check ("number" >= 1),
  constraint "task_attempt_outcome_check" check ("outcome" in ('running', 'succeeded', 'failed', 'cancelled', 'timed_out', 'lost')),
  constraint "task_attempt_ended_check" check (("ended_at" is null) = ("outcome" = 'running'))
);`);

    this.addSql(`
create table "worker" (
  "namespace" text not null,
  "id" text not null,
  "job_types" text[] not null,
  "credits" int not null,
  "connected_at" timestamptz not null default now(),
  "last_seen_at" timestamptz not null default now(),
  "disconnected_at" timestamptz null,
  primary key ("namespace", "id"),
  constraint "worker_namespace_foreign" foreign key ("namespace") references "namespace" ("name")
);`);

    // Wake-ups: one NOTIFY per (namespace, job type) of a submitted batch, and one per task that
    // becomes pending again (retry). Payload: {"ns", "jt", "at"}; "at" is the earliest run_at in
    // epoch ms, so dispatchers can set a timer for delayed tasks. PostgreSQL delivers them at commit.
    this.addSql(`
create function "taskwire_notify_inserted"() returns trigger language plpgsql as $$
begin
  perform pg_notify('taskwire_ready', json_build_object('ns', ns, 'jt', jt, 'at', (extract(epoch from at) * 1000)::bigint)::text)
  from (select "namespace" as ns, "job_type" as jt, min("run_at") as at from inserted where "state" = 'pending' group by 1, 2) ready;
  return null;
end $$;`);
    this.addSql(`
create trigger "task_notify_inserted" after insert on "task"
referencing new table as inserted for each statement execute function "taskwire_notify_inserted"();`);
    this.addSql(`
create function "taskwire_notify_pending"() returns trigger language plpgsql as $$
begin
  perform pg_notify('taskwire_ready', json_build_object('ns', new."namespace", 'jt', new."job_type",
    'at', (extract(epoch from new."run_at") * 1000)::bigint)::text);
  return null;
end $$;`);
    this.addSql(`
create trigger "task_notify_pending" after update of "state" on "task"
for each row when (new."state" = 'pending' and old."state" <> 'pending') execute function "taskwire_notify_pending"();`);
  }

  override down(): void {
    this.addSql(`drop table if exists "worker", "task_attempt", "task", "job_type", "namespace" cascade;`);
    this.addSql(`drop function if exists "taskwire_notify_inserted"(), "taskwire_notify_pending"();`);
  }
}
