import { Migration } from "@mikro-orm/migrations";

/**
 * A task submitted while an idle worker waits for its job type is inserted RUNNING, leased to that
 * worker (Dispatcher.planDirect). Watchers must still see its whole life, so the insert trigger
 * records such a task as created PENDING (attempt 0), then moved PENDING -> RUNNING (attempt 1, its
 * worker), two events in that order; other tasks get their one `created` event as before.
 */
export class Migration0008DirectHandOff extends Migration {
  override up(): void {
    this.addSql(`
create or replace function "taskwire_events_inserted"() returns trigger language plpgsql as $$
declare
  r record;
  base bigint;
begin
  for r in
    select "namespace" as ns, count(*) + count(*) filter (where "state" = 'running') as n
    from inserted group by 1 order by 1
  loop
    update "namespace" set "event_seq" = "event_seq" + r.n where "name" = r.ns returning "event_seq" - r.n into base;
    insert into "task_event" ("namespace", "seq", "task_id", "job_type", "kind", "state", "previous_state", "attempt", "worker_id", "at")
    select r.ns, base + row_number() over (order by e.id, e.step), e.id, e.job_type, e.kind, e.state, e.previous_state, e.attempt, e.worker_id, e.at
    from (
      select i."id", 0 as step, i."job_type", 'created' as kind,
        case when i."state" = 'running' then 'pending' else i."state" end as state,
        null::text as previous_state, 0 as attempt, null::text as worker_id, i."created_at" as at
      from inserted i where i."namespace" = r.ns
      union all
      select i."id", 1, i."job_type", 'state_changed', 'running', 'pending', i."attempt", i."worker_id", i."created_at"
      from inserted i where i."namespace" = r.ns and i."state" = 'running'
    ) e;
    perform pg_notify('taskwire_events', json_build_object('ns', r.ns, 'seq', base + r.n)::text);
  end loop;
  return null;
end $$;`);
  }

  override down(): void {
    this.addSql(`
create or replace function "taskwire_events_inserted"() returns trigger language plpgsql as $$
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
  }
}
