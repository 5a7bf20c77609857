/**
 * The migrated schema against the entities, and the parts that live only in the migration: CHECK
 * constraints mirroring src/core/task-state.ts (and the dependency invariants of migration 0030),
 * and the NOTIFY trigger that wakes dispatchers.
 */
import pg from "pg";
import t from "tap";
import { createTestDatabase } from "../helpers/database.js";

const { url, database } = await createTestDatabase(t);
const { db } = database;

/**
 * The only statements the ORM may want to run on a freshly migrated database: dropping what the
 * entities cannot express (foreign keys of plain-text columns, CHECKs, partial/ordered indexes,
 * triggers and their functions). Anything else — a table, a column, a type, a default or a
 * nullability — means the entities and the migrations disagree.
 */
const MIGRATION_ONLY = [
  /^alter table "\w+" drop constraint "\w+";$/,
  /^drop index "\w+";$/,
  /^drop trigger if exists "\w+" on "\w+";$/,
  /^drop function if exists "\w+"\(((integer|double precision)(, )?)*\);$/,
];

t.test("the migrated schema matches the entities", async (t) => {
  const sql = await database.orm.schema.getUpdateSchemaSQL({ wrap: false });
  const statements = sql
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line.length > 0);
  const drift = statements.filter((statement) => !MIGRATION_ONLY.some((allowed) => allowed.test(statement)));
  t.same(drift, [], "no table or column differs between the entities and the migrations");
  // The comparison did read the database: it sees the migration-only objects.
  t.ok(statements.includes('alter table "task" drop constraint "task_finished_check";'), "the diff sees the CHECK constraints");
  t.ok(statements.includes('drop index "task_claim_idx";'), "the diff sees the indexes");

  t.same(await database.orm.migrator.getPending(), [], "no migration pending");
  const executed = await database.orm.migrator.getExecuted();
  const { MIGRATIONS } = await import("../../src/store/migrations/index.js");
  t.same(executed.map((m) => m.name), MIGRATIONS.map((m) => m.name), "every migration ran, in order");
});

/** A task row as migration 0001 requires it, with `overrides` in SQL. */
async function insertTask(overrides: Record<string, string> = {}): Promise<void> {
  const columns: Record<string, string> = {
    namespace: "'default'",
    job_type: "'email.send'",
    input_type_url: "''",
    input: "'\\x'::bytea",
    priority: "0",
    max_attempts: "3",
    ...overrides,
  };
  const names = Object.keys(columns).map((name) => `"${name}"`);
  await db.query(`insert into "task" (${names.join(", ")}) values (${Object.values(columns).join(", ")})`);
}

t.test("CHECK constraints reject illegal rows", async (t) => {
  await t.resolves(insertTask(), "a plain pending task is legal");
  await t.resolves(insertTask({ state: "'succeeded'", finished_at: "now()", attempt: "1" }), "a succeeded task with finished_at is legal");
  await t.resolves(
    insertTask({ state: "'running'", lease_token: "gen_random_uuid()", lease_expires_at: "now()", attempt: "1", worker_id: "'w1'" }),
    "a running task with a lease is legal",
  );
  await t.resolves(insertTask({ state: "'waiting'", unmet_dependencies: "2" }), "a waiting task with unmet dependencies is legal");

  const illegal: [label: string, overrides: Record<string, string>, constraint: string][] = [
    ["succeeded without finished_at", { state: "'succeeded'" }, "task_finished_check"],
    ["dead without finished_at", { state: "'dead'" }, "task_finished_check"],
    ["pending with finished_at", { finished_at: "now()" }, "task_finished_check"],
    ["an unknown state", { state: "'paused'" }, "task_state_check"],
    ["running without a lease", { state: "'running'", attempt: "1", lease_expires_at: "now()" }, "task_lease_check"],
    ["running without a lease deadline", { state: "'running'", attempt: "1", lease_token: "gen_random_uuid()" }, "task_lease_expiry_check"],
    ["progress above 1", { progress: "1.5" }, "task_progress_check"],
    ["backoff cap below its base", { backoff_base_ms: "5000", backoff_cap_ms: "10" }, "task_retry_check"],
    ["pending with a lease", { lease_token: "gen_random_uuid()" }, "task_lease_check"],
    ["attempt above max_attempts", { attempt: "4" }, "task_attempt_check"],
    ["max_attempts of 0", { max_attempts: "0" }, "task_attempt_check"],
    ["waiting with no unmet dependency", { state: "'waiting'" }, "task_unmet_dependencies_check"],
    ["pending with an unmet dependency", { unmet_dependencies: "1" }, "task_unmet_dependencies_check"],
    ["a negative count of unmet dependencies", { state: "'dead'", finished_at: "now()", unmet_dependencies: "-1" }, "task_unmet_dependencies_check"],
  ];
  for (const [label, overrides, constraint] of illegal) {
    await t.rejects(insertTask(overrides), { code: "23514", constraint }, label);
  }
  await t.resolves(db.query(`insert into "task_dependency" values (2, 1)`), "an edge from a newer task to an older one is legal");
  await t.rejects(db.query(`insert into "task_dependency" values (3, 3)`), { code: "23514", constraint: "task_dependency_order_check" }, "a task depending on itself");
  await t.rejects(db.query(`insert into "task_dependency" values (3, 4)`), { code: "23514", constraint: "task_dependency_order_check" }, "a task depending on a newer one (a cycle could follow)");
  await t.rejects(
    db.query(`insert into "namespace" ("name") values ('Has Spaces')`),
    { code: "23514", constraint: "namespace_name_check" },
    "an invalid namespace name",
  );
});

t.test("inserting tasks notifies taskwire_ready once per (namespace, job type)", async (t) => {
  const listener = new pg.Client({ connectionString: url });
  await listener.connect();
  t.teardown(() => listener.end());
  const payloads: string[] = [];
  // A sentinel sent after the INSERT committed: notifications arrive in commit order, so once it
  // is in, every notification of the INSERT is too (no sleeping to wait for stragglers).
  const sentinel = new Promise<void>((resolve) => {
    listener.on("notification", (message) => {
      if (message.payload === "sentinel") resolve();
      else payloads.push(message.payload ?? "");
    });
  });
  await listener.query("LISTEN taskwire_ready");

  await db.query(`insert into "job_type" ("namespace", "name") values ('default', 'report.build')`);
  await db.query(
    `insert into "task" ("namespace", "job_type", "input_type_url", "input", "priority", "max_attempts", "run_at")
     values ('default', 'report.build', '', '\\x'::bytea, 0, 3, '2030-01-01T00:00:05Z'),
            ('default', 'report.build', '', '\\x'::bytea, 5, 3, '2030-01-01T00:00:01Z')`,
  );
  await db.query(`select pg_notify('taskwire_ready', 'sentinel')`);
  await sentinel;

  t.equal(payloads.length, 1, "one notification for the two tasks");
  t.same(JSON.parse(payloads[0] ?? "null"), {
    ns: "default",
    jt: "report.build",
    at: Date.parse("2030-01-01T00:00:01Z"),
  }, "the payload names the namespace, the job type and the earliest run_at");
});

t.test("the event triggers keep their plan settings and order after every migration that replaced them", async (t) => {
  const rows = await db.query<{ proname: string; proconfig: string[] | null }>(
    "SELECT proname, proconfig FROM pg_proc WHERE proname IN ('taskwire_events_updated', 'taskwire_events_inserted', 'taskwire_settle_dependents') ORDER BY proname",
  );
  t.same(
    rows.map((r) => [r.proname, r.proconfig]),
    [
      ["taskwire_events_inserted", null],
      ["taskwire_events_updated", ["enable_nestloop=off"]],
      ["taskwire_settle_dependents", null],
    ],
    "hash joins only in the update trigger (migration 0007, restated by 0010's CREATE OR REPLACE)",
  );
  // Triggers of one event fire in name order: a parent's events are written before its dependents' settle.
  const triggers = await db.query<{ tgname: string }>(
    "SELECT tgname FROM pg_trigger WHERE tgrelid = 'task'::regclass AND NOT tgisinternal AND tgtype & 16 <> 0 ORDER BY tgname",
  );
  // (task_mark_limited_unblocked is a BEFORE row trigger and task_notify_limit_freed only NOTIFYs:
  // neither depends on the others' order.)
  t.same(triggers.map((r) => r.tgname), ["task_events_updated", "task_mark_limited_unblocked", "task_notify_limit_freed", "task_notify_pending", "task_settle_dependents"]);
});
