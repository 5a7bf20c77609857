import { Migration } from "@mikro-orm/migrations";

/**
 * Limits (0040) meet dependencies (0030): only tasks marked `limited` are claimed for a job type
 * with limits, and the repair that marks the tasks of a job type that just got limits covers
 * PENDING and RUNNING ones only. A task that was WAITING then becomes PENDING (its dependencies
 * succeeded) unmarked, and no claim would ever take it. So a task is marked as it moves from
 * WAITING to PENDING when its job type has limits by then. A row trigger with a WHEN clause: other
 * updates (claims, completions) do not call it.
 */
export class Migration0041LimitedUnblock extends Migration {
  override up(): void {
    this.addSql(`
create function "taskwire_mark_limited_unblocked"() returns trigger language plpgsql as $$
begin
  new."limited" := exists (
    select 1 from "job_type" j where j."namespace" = new."namespace" and j."name" = new."job_type"
      and (j."rate_max_starts" is not null or j."max_running" is not null or j."max_running_per_key" is not null));
  return new;
end $$;`);
    this.addSql(`
create trigger "task_mark_limited_unblocked" before update of "state" on "task"
for each row when (old."state" = 'waiting' and new."state" = 'pending' and not new."limited")
execute function "taskwire_mark_limited_unblocked"();`);
  }

  override down(): void {
    this.addSql(`drop trigger if exists "task_mark_limited_unblocked" on "task";`);
    this.addSql(`drop function if exists "taskwire_mark_limited_unblocked"();`);
  }
}
