import { Migration } from "@mikro-orm/migrations";

/**
 * Task dependencies (issue 8).
 *
 * Edges live in task_dependency (child_id, parent_id), found from the parent through
 * task_dependency_parent_idx. A parent is always older than its child (a task can only name tasks
 * that exist, or earlier tasks of its own batch), so ids grow along every edge: graphs cannot have
 * cycles, and locking in id order locks parents before children. Rows of the task table carry
 * three facts so that tasks without dependencies never read the edge table:
 * - has_dependencies: it has parents (claims then deliver their outputs, reads list their ids);
 * - has_dependents: some task may name it as a parent (set by Submit and Retry before they lock it);
 * - unmet_dependencies: while WAITING, how many parents have not SUCCEEDED yet (> 0 exactly then).
 *
 * One statement-level trigger settles dependents, whatever statement finishes a task (complete,
 * fail, sweep, cancel, and the dependency failures themselves): a parent that SUCCEEDED decrements
 * its WAITING children, which become PENDING at zero (the row trigger task_notify_pending wakes
 * dispatchers, the event trigger records the move); a parent that ended DEAD or CANCELLED makes its
 * WAITING children DEAD, naming it, and theirs in turn, level by level. All in the finishing
 * statement's transaction.
 *
 * Why a trigger and not a CTE of the finishing statement: every part of one statement reads one
 * snapshot. Submit locks a child's parents (FOR SHARE) while it inserts the child and its edges, so
 * a completion that reaches a parent then waits for that Submit to commit; its own CTEs would still
 * read the edges as of before the wait and miss the new child, which would then wait forever. A
 * trigger's queries take their snapshot after the statement's rows are written, so they see every
 * edge committed before the parent's row could be locked. The cheap path (no updated row has
 * dependents: every claim, heartbeat and completion without dependencies) is one scan of the
 * statement's new rows. It is named to run after task_events_updated (triggers on one event fire in
 * name order), so a parent's event comes before those of the dependents it settles.
 */
export class Migration0030Dependencies extends Migration {
  override up(): void {
    this.addSql(`
alter table "task"
  add column "has_dependencies" boolean not null default false,
  add column "has_dependents" boolean not null default false,
  add column "unmet_dependencies" int not null default 0;`);
    // NOT VALID then VALIDATE: the existing rows are checked without blocking writes meanwhile.
    this.addSql(`
alter table "task" add constraint "task_unmet_dependencies_check"
  check ("unmet_dependencies" >= 0 and ("state" = 'waiting') = ("unmet_dependencies" > 0)) not valid;`);
    this.addSql(`alter table "task" validate constraint "task_unmet_dependencies_check";`);
    // No foreign keys (as for attempts and events, migration 0007): edges are written by Submit only
    // and deleted with their child by the retention pruner.
    this.addSql(`
create table "task_dependency" (
  "child_id" bigint not null,
  "parent_id" bigint not null,
  primary key ("child_id", "parent_id"),
  constraint "task_dependency_order_check" check ("parent_id" < "child_id")
);`);
    this.addSql(`create index "task_dependency_parent_idx" on "task_dependency" ("parent_id");`);

    // The transition table's `unblock` (waiting -> pending) and `dependency_failed` (waiting ->
    // dead), src/core/task-state.ts. Statements inside it fire this trigger again (depth 2) for
    // the tasks they move: the loop here already handles those, so nested calls return at once.
    // Children are found through the edges and locked by `id = ANY(ARRAY(...))`, a primary-key
    // lookup per child in id order, so concurrent settlements lock shared children in one order.
    this.addSql(`
create function "taskwire_settle_dependents"() returns trigger language plpgsql as $$
declare
  finished bigint[];
  succeeded bigint[];
  failed bigint[];
  failed_states text[];
  level int := 1;
begin
  if pg_trigger_depth() > 1 then return null; end if;
  select array_agg(n."id") into finished from new_rows n where n."has_dependents" and n."finished_at" is not null;
  if finished is null then return null; end if;
  -- Only rows this statement finished: one that was finished already settled its dependents then.
  select array_agg(n."id") filter (where n."state" = 'succeeded'),
         array_agg(n."id") filter (where n."state" <> 'succeeded'),
         array_agg(n."state") filter (where n."state" <> 'succeeded')
    into succeeded, failed, failed_states
  from new_rows n
  where n."id" = any(finished)
    and n."id" = any(array(select o."id" from old_rows o where o."id" = any(finished) and o."finished_at" is null));

  if succeeded is not null then
    update "task" c
    set "unmet_dependencies" = c."unmet_dependencies"
          - (select count(*)::int from "task_dependency" d where d."child_id" = c."id" and d."parent_id" = any(succeeded)),
        "state" = case when c."unmet_dependencies"
          = (select count(*)::int from "task_dependency" d where d."child_id" = c."id" and d."parent_id" = any(succeeded))
          then 'pending' else 'waiting' end,
        -- FIFO counts from when it became ready; a later run_at it was submitted with still holds.
        "run_at" = case when c."unmet_dependencies"
          = (select count(*)::int from "task_dependency" d where d."child_id" = c."id" and d."parent_id" = any(succeeded))
          then greatest(c."run_at", now()) else c."run_at" end,
        "updated_at" = now()
    where c."id" = any(array(select d."child_id" from "task_dependency" d where d."parent_id" = any(succeeded)))
      and c."state" = 'waiting';
  end if;

  while failed is not null loop
    with killed as (
      update "task" c
      set "state" = 'dead', "unmet_dependencies" = 0, "finished_at" = now(), "updated_at" = now(),
          "last_error" = (
            select format('dependency %s ended %s', d."parent_id",
              case when level = 1 then upper(failed_states[array_position(failed, d."parent_id")]) else 'DEAD' end)
            from "task_dependency" d
            where d."child_id" = c."id" and d."parent_id" = any(failed)
            order by d."parent_id" limit 1)
      where c."id" = any(array(select d."child_id" from "task_dependency" d where d."parent_id" = any(failed)))
        and c."state" = 'waiting'
      returning c."id"
    )
    select array_agg(k."id") into failed from killed k;
    level := level + 1;
  end loop;
  return null;
end $$;`);
    this.addSql(`
create trigger "task_settle_dependents" after update on "task"
referencing old table as old_rows new table as new_rows for each statement execute function "taskwire_settle_dependents"();`);
  }

  override down(): void {
    this.addSql(`drop trigger if exists "task_settle_dependents" on "task";`);
    this.addSql(`drop function if exists "taskwire_settle_dependents"();`);
    this.addSql(`drop table if exists "task_dependency";`);
    this.addSql(`alter table "task" drop constraint "task_unmet_dependencies_check",
      drop column "unmet_dependencies", drop column "has_dependents", drop column "has_dependencies";`);
  }
}
