import { Migration } from "@mikro-orm/migrations";

/** Inline job types: the module (inside the server's inline folder) that runs their tasks on the thread pool. */
export class Migration0005Inline extends Migration {
  override up(): void {
    this.addSql(`alter table "job_type" add column "inline_module" text null;`);
  }

  override down(): void {
    this.addSql(`alter table "job_type" drop column "inline_module";`);
  }
}
