import { Migration } from "@mikro-orm/migrations";

/**
 * The claim and completion statements, measured at batch sizes of a few hundred tasks:
 *
 * - The event trigger joins its transition tables (new_rows, old_rows), which have no statistics;
 *   its plan (cached for the session) was a nested loop, n x n comparisons per statement (5 ms for
 *   250 rows, a third of a claim). Hash joins only, inside that function.
 * - task_attempt and task_event referenced task with foreign keys: four key checks per task (each
 *   a FOR KEY SHARE lock on the task row), and the retention pruner was their only user (ON DELETE
 *   CASCADE). Attempts and events are written only by the statements that change their task, and
 *   the pruner now deletes them with it, so the keys go. W1's PostgreSQL CPU per task: 108 -> 56 us
 *   for both changes together.
 */
export class Migration0007HotPath extends Migration {
  override up(): void {
    this.addSql(`alter function "taskwire_events_updated"() set enable_nestloop = off;`);
    this.addSql(`alter table "task_attempt" drop constraint "task_attempt_task_id_foreign";`);
    this.addSql(`alter table "task_event" drop constraint "task_event_task_id_foreign";`);
  }

  override down(): void {
    this.addSql(`alter function "taskwire_events_updated"() reset enable_nestloop;`);
    this.addSql(`alter table "task_attempt" add constraint "task_attempt_task_id_foreign" foreign key ("task_id") references "task" ("id") on delete cascade;`);
    this.addSql(`alter table "task_event" add constraint "task_event_task_id_foreign" foreign key ("task_id") references "task" ("id") on delete cascade;`);
  }
}
