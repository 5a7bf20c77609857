import { Migration } from "@mikro-orm/migrations";

/**
 * Leases, timeouts and retry policy: job types set the lease length (read at claim and heartbeat
 * time, so a change applies to running tasks too); tasks carry their lease and timeout deadlines
 * and backoff; the sweeper finds expired ones through two partial indexes. Attempts may
 * be released (a draining worker), and the backoff formula lives in one SQL function that mirrors
 * src/core/backoff.ts.
 */
export class Migration0002Leases extends Migration {
  override up(): void {
    this.addSql(`
alter table "job_type"
  add column "backoff_base_ms" int not null default 1000,
  add column "backoff_cap_ms" int not null default 600000,
  add column "lease_ms" int not null default 30000,
  add constraint "job_type_retry_check" check ("backoff_base_ms" between 0 and 86400000
    and "backoff_cap_ms" between "backoff_base_ms" and 86400000 and "lease_ms" between 1000 and 3600000);`);
    this.addSql(`
alter table "task"
  add column "backoff_base_ms" int not null default 1000,
  add column "backoff_cap_ms" int not null default 600000,
  add column "lease_expires_at" timestamptz null,
  add column "timeout_at" timestamptz null,
  add column "progress" double precision not null default 0,
  add column "progress_message" text not null default '',
  add column "checkpoint" bytea null;`);
    // Retry gives a finished task new attempts beyond its first max_attempts, so only the lower
    // bound of max_attempts stays.
    this.addSql(`alter table "task" drop constraint "task_attempt_check";`);
    this.addSql(`
alter table "task"
  add constraint "task_attempt_check" check ("attempt" >= 0 and "attempt" <= "max_attempts" and "max_attempts" >= 1),
  add constraint "task_lease_expiry_check" check (("lease_expires_at" is not null) = ("state" = 'running')),
  add constraint "task_retry_check" check ("backoff_base_ms" between 0 and 86400000
    and "backoff_cap_ms" between "backoff_base_ms" and 86400000),
  add constraint "task_progress_check" check ("progress" between 0 and 1);`);
    this.addSql(`create index "task_lease_expiry_idx" on "task" ("lease_expires_at") where "state" = 'running';`);
    this.addSql(`create index "task_timeout_idx" on "task" ("timeout_at") where "state" = 'running' and "timeout_at" is not null;`);
    this.addSql(`alter table "task_attempt" drop constraint "task_attempt_outcome_check";`);
    this.addSql(`
alter table "task_attempt" add constraint "task_attempt_outcome_check"
  check ("outcome" in ('running', 'succeeded', 'failed', 'cancelled', 'timed_out', 'lost', 'released'));`);
    // The delay after attempt n failed: uniformly in [d/2, d], d = min(cap, base * 2^(n-1)), with
    // jitter in [0, 1). Same formula as backoffDelayMs in src/core/backoff.ts (tested to agree).
    this.addSql(`
create function "taskwire_backoff_ms"(base int, cap int, attempt int, jitter double precision) returns int
language sql immutable parallel safe as $$
  -- floor(x + 0.5) rounds halves up like JavaScript's Math.round (round() on float8 rounds them to even).
  select floor(least(cap::double precision, base::double precision * power(2, least(greatest(attempt - 1, 0), 52))) / 2 * (1 + jitter) + 0.5)::int
$$;`);
  }

  override down(): void {
    this.addSql(`drop function if exists "taskwire_backoff_ms"(int, int, int, double precision);`);
    this.addSql(`drop index if exists "task_lease_expiry_idx", "task_timeout_idx";`);
    this.addSql(`alter table "task" drop constraint "task_lease_expiry_check", drop constraint "task_retry_check", drop constraint "task_progress_check";`);
    this.addSql(`alter table "task" drop column "backoff_base_ms", drop column "backoff_cap_ms",
      drop column "lease_expires_at", drop column "timeout_at", drop column "progress", drop column "progress_message", drop column "checkpoint";`);
    this.addSql(`alter table "job_type" drop constraint "job_type_retry_check", drop column "backoff_base_ms", drop column "backoff_cap_ms", drop column "lease_ms";`);
  }
}
