import { Migration } from "@mikro-orm/migrations";

/**
 * Retention: a job type keeps its finished tasks (with their attempts and events, which cascade)
 * for retention_ms after they finish; null keeps them forever. The pruner finds the oldest finished
 * tasks of each job type through a partial index, so it never touches the claim path's rows.
 */
export class Migration0004Retention extends Migration {
  override up(): void {
    this.addSql(`
alter table "job_type"
  add column "retention_ms" bigint null default 604800000,
  add constraint "job_type_retention_check" check ("retention_ms" between 1000 and 315360000000);`);
    this.addSql(`create index "task_finished_idx" on "task" ("namespace", "job_type", "finished_at") where "finished_at" is not null;`);
  }

  override down(): void {
    this.addSql(`drop index if exists "task_finished_idx";`);
    this.addSql(`alter table "job_type" drop constraint "job_type_retention_check", drop column "retention_ms";`);
  }
}
