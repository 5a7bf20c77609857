import { Migration } from "@mikro-orm/migrations";

/**
 * Idempotency keys and cron schedules (issue 8).
 *
 * Keys: a task may carry an idempotency key, and a partial unique index lets only one task per
 * (namespace, job type, key) hold it. A task holds its key while unfinished and, once finished,
 * until a later Submit with the same key finds it finished longer ago than the job type's
 * dedup_window and releases it (key_released) in the same transaction as its own insert. So the
 * index alone settles races, finishing a task costs nothing extra, and a task that no longer
 * holds its key still shows it. Tasks without a key are not in the index at all.
 *
 * Schedules: one row per (namespace, name) with the task each fire submits (settings resolved at
 * creation) and the next fire time, found by every replica's scheduler through schedule_due_idx
 * (FOR UPDATE SKIP LOCKED). The tasks a schedule creates carry its name and their fire time, and a
 * partial unique index on those makes each fire time produce one task whatever the replicas do.
 * That bookkeeping lives on the task rows, so retention deletes it with them.
 */
export class Migration0020DedupSchedules extends Migration {
  override up(): void {
    this.addSql(`
alter table "task"
  add column "idempotency_key" text null,
  add column "key_released" boolean not null default false,
  add column "schedule_name" text null,
  add column "schedule_fire_at" timestamptz null,
  add constraint "task_idempotency_key_check" check (char_length("idempotency_key") between 1 and 256),
  add constraint "task_schedule_check" check (("schedule_name" is null) = ("schedule_fire_at" is null));`);
    this.addSql(`
create unique index "task_idempotency_idx" on "task" ("namespace", "job_type", "idempotency_key")
where "idempotency_key" is not null and not "key_released";`);
    this.addSql(`
create unique index "task_schedule_fire_idx" on "task" ("namespace", "schedule_name", "schedule_fire_at")
where "schedule_name" is not null;`);
    this.addSql(`
alter table "job_type"
  add column "dedup_window_ms" bigint null,
  add constraint "job_type_dedup_window_check" check ("dedup_window_ms" between 1000 and 2592000000);`);

    this.addSql(`
create table "schedule" (
  "namespace" text not null,
  "name" text not null,
  "cron" text not null,
  "time_zone" text not null,
  "job_type" text not null,
  "input_type_url" text not null,
  "input" bytea not null,
  "priority" int not null,
  "max_attempts" int not null,
  "timeout_ms" int null,
  "backoff_base_ms" int not null,
  "backoff_cap_ms" int not null,
  "missed_policy" text not null default 'skip',
  "paused" boolean not null default false,
  "next_fire_at" timestamptz null,
  "last_fire_at" timestamptz null,
  "last_task_id" bigint null,
  "last_error" text null,
  "created_at" timestamptz not null default now(),
  "updated_at" timestamptz not null default now(),
  primary key ("namespace", "name"),
  constraint "schedule_namespace_foreign" foreign key ("namespace") references "namespace" ("name"),
  constraint "schedule_missed_policy_check" check ("missed_policy" in ('skip', 'run_once')),
  constraint "schedule_task_check" check ("priority" between -1000 and 1000 and "max_attempts" between 1 and 1000
    and ("timeout_ms" is null or "timeout_ms" > 0) and "backoff_base_ms" between 0 and 86400000
    and "backoff_cap_ms" between "backoff_base_ms" and 86400000)
);`);
    // What the schedulers poll: only schedules that will fire.
    this.addSql(`create index "schedule_due_idx" on "schedule" ("next_fire_at") where not "paused" and "next_fire_at" is not null;`);
  }

  override down(): void {
    this.addSql(`drop table if exists "schedule";`);
    this.addSql(`alter table "job_type" drop constraint "job_type_dedup_window_check", drop column "dedup_window_ms";`);
    this.addSql(`drop index if exists "task_schedule_fire_idx", "task_idempotency_idx";`);
    this.addSql(`alter table "task" drop constraint "task_schedule_check", drop constraint "task_idempotency_key_check",
      drop column "schedule_fire_at", drop column "schedule_name", drop column "key_released", drop column "idempotency_key";`);
  }
}
