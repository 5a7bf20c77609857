import { Migration } from "@mikro-orm/migrations";

/**
 * Rate and concurrency limits per job type (issue 8), enforced by the database across replicas.
 *
 * - job_type gets the limits: a rate (at most rate_max_starts attempt starts in any interval of
 *   rate_window_ms), max_running (RUNNING tasks of the job type) and max_running_per_key (RUNNING
 *   tasks per concurrency key). Null: no such limit. A job type with any limit is claimed only by
 *   the limited claim (src/dispatch/limited-claim.ts), which serialises on an advisory lock per
 *   (namespace, job type); the ordinary claim and the direct hand-off skip such job types.
 * - task gets its concurrency_key, and `limited`: the task belongs to a job type with limits. It
 *   is set when the task is submitted to such a job type, and by the limited claim for the tasks
 *   already there when a job type gets limits (see task-limited-repair.ts); it is never cleared.
 *   Only such tasks enter the two partial indexes below, so tasks of job types without limits
 *   (with a key or not) maintain no extra index entry when they are submitted, claimed or finished.
 * - task_limited_pending_idx serves the limited claim: a loose index scan over the concurrency keys
 *   with pending tasks, and the first tasks of each key. Tasks without a key are the key '' there
 *   (keys have at least one character), so they too are read in claim order by an equality.
 *   task_limited_running_idx is what it counts RUNNING tasks with, per job type and per key.
 * - job_type_limiter keeps the round-robin position over keys (shared by all replicas) and when the
 *   repair last ran; job_type_start_bucket counts attempt starts per 1/100 of the rate window,
 *   pruned by the claims.
 * - A limited task that stops RUNNING (completed, failed, cancelled, timed out, swept) NOTIFYs
 *   taskwire_ready for its job type, so dispatchers on every replica claim again when capacity
 *   comes back. The trigger's WHEN clause keeps every other task's update free of it; notifications
 *   with the same payload in one transaction arrive once.
 */
export class Migration0040Limits extends Migration {
  override up(): void {
    this.addSql(`
alter table "job_type"
  add column "rate_max_starts" int null,
  add column "rate_window_ms" int null,
  add column "max_running" int null,
  add column "max_running_per_key" int null,
  add constraint "job_type_limits_check" check (
    ("rate_max_starts" is null) = ("rate_window_ms" is null)
    and ("rate_max_starts" is null or "rate_max_starts" between 0 and 1000000)
    and ("rate_window_ms" is null or "rate_window_ms" between 1000 and 86400000)
    and ("max_running" is null or "max_running" between 0 and 100000)
    and ("max_running_per_key" is null or "max_running_per_key" between 0 and 100000));`);
    this.addSql(`
alter table "task"
  add column "concurrency_key" text null,
  add column "limited" boolean not null default false,
  add constraint "task_concurrency_key_check" check (char_length("concurrency_key") between 1 and 128);`);
    this.addSql(`
create index "task_limited_running_idx" on "task" ("namespace", "job_type", "concurrency_key")
where "state" = 'running' and "limited";`);
    this.addSql(`
create index "task_limited_pending_idx" on "task" ("namespace", "job_type", coalesce("concurrency_key", ''), "priority" desc, "run_at", "id")
where "state" = 'pending' and "limited";`);
    this.addSql(`
alter table "schedule"
  add column "concurrency_key" text null,
  add constraint "schedule_concurrency_key_check" check (char_length("concurrency_key") between 1 and 128);`);

    this.addSql(`
create table "job_type_limiter" (
  "namespace" text not null,
  "job_type" text not null,
  "key_cursor" text null,
  "repaired_at" timestamptz null,
  primary key ("namespace", "job_type")
);`);
    this.addSql(`
create table "job_type_start_bucket" (
  "namespace" text not null,
  "job_type" text not null,
  "bucket_start" timestamptz not null,
  "ends_at" timestamptz not null,
  "starts" int not null,
  primary key ("namespace", "job_type", "bucket_start"),
  constraint "job_type_start_bucket_check" check ("starts" > 0 and "ends_at" > "bucket_start")
);`);

    this.addSql(`
create function "taskwire_notify_limit_freed"() returns trigger language plpgsql as $$
begin
  perform pg_notify('taskwire_ready', json_build_object('ns', new."namespace", 'jt', new."job_type", 'at', null)::text);
  return null;
end $$;`);
    this.addSql(`
create trigger "task_notify_limit_freed" after update of "state" on "task"
for each row when (old."state" = 'running' and new."state" <> 'running' and old."limited")
execute function "taskwire_notify_limit_freed"();`);
  }

  override down(): void {
    this.addSql(`drop trigger if exists "task_notify_limit_freed" on "task";`);
    this.addSql(`drop function if exists "taskwire_notify_limit_freed"();`);
    this.addSql(`drop table if exists "job_type_start_bucket", "job_type_limiter";`);
    this.addSql(`alter table "schedule" drop constraint "schedule_concurrency_key_check", drop column "concurrency_key";`);
    this.addSql(`drop index if exists "task_limited_pending_idx", "task_limited_running_idx";`);
    this.addSql(`alter table "task" drop constraint "task_concurrency_key_check", drop column "limited", drop column "concurrency_key";`);
    this.addSql(`alter table "job_type" drop constraint "job_type_limits_check",
      drop column "max_running_per_key", drop column "max_running", drop column "rate_window_ms", drop column "rate_max_starts";`);
  }
}
