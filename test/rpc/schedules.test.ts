/** Cron schedules: the RPCs and their validation, one task per fire time across replicas, and missed fires after downtime. */
import { durationFromMs, timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import t from "tap";
import type { FiredSchedule } from "../../src/engine/scheduler.js";
import { MissedFirePolicy } from "../../src/gen/taskwire/v1/schedule_pb.js";
import { anyJson, jsonAny } from "../helpers/payload.js";
import { createTestDatabaseUrl } from "../helpers/database.js";
import { rejection } from "../helpers/rejection.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const s = await startTestServer(t, { scheduleIntervalMs: 100 });
const db = s.server.engine.database.db;
await s.jobTypes.registerJobType({ name: "cron.job", defaultMaxAttempts: 4, defaultPriority: 3 });
await s.jobTypes.registerJobType({ name: "cron.typed", inputType: "google.protobuf.StringValue" });

/** Polls until `check` is true (at most `ms`). */
async function until(check: () => Promise<boolean> | boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 50));
  }
}
/** The fire times (ms) of a schedule's tasks, oldest first. */
async function fireTimes(database: typeof db, name: string): Promise<number[]> {
  const rows = await database.query<{ at: Date | string }>("SELECT schedule_fire_at AS at FROM task WHERE schedule_name = $1 ORDER BY schedule_fire_at", [name]);
  return rows.map((r) => new Date(r.at).getTime());
}

t.test("create, get, list, pause, resume, delete", async (t) => {
  const created = (await s.schedules.createSchedule({ name: "nightly", cron: "0 3 * * *", timeZone: "Europe/Berlin", task: { jobType: "cron.job", input: jsonAny({ report: "daily" }), maxAttempts: 0 + 2 } })).schedule!;
  t.equal(created.cron, "0 3 * * *");
  t.equal(created.timeZone, "Europe/Berlin");
  t.equal(created.missedFirePolicy, MissedFirePolicy.SKIP, "UNSPECIFIED is SKIP");
  t.equal(created.task?.priority, 3, "settings resolved from the job type");
  t.equal(created.task?.maxAttempts, 2, "and from the request");
  t.same(anyJson(created.task?.input), { report: "daily" });
  const next = timestampDate(created.nextFireTime!);
  t.ok(next.getTime() > Date.now(), "the next fire time is in the future");
  t.equal(new Intl.DateTimeFormat("en-GB", { timeZone: "Europe/Berlin", hour: "2-digit", minute: "2-digit" }).format(next), "03:00", "at 03:00 Berlin time");
  t.equal((await s.schedules.getSchedule({ name: "nightly" })).schedule?.name, "nightly");
  const utc = (await s.schedules.createSchedule({ name: "hourly", cron: "@hourly", task: { jobType: "cron.job", input: jsonAny(1) } })).schedule!;
  t.equal(utc.timeZone, "UTC", "no time zone: UTC");

  const duplicate = await rejection(() => s.schedules.createSchedule({ name: "nightly", cron: "* * * * *", task: { jobType: "cron.job", input: jsonAny(1) } }));
  t.equal(duplicate.code, Code.AlreadyExists);
  t.match(duplicate.message, /schedule "nightly" already exists/);

  const first = await s.schedules.listSchedules({ pageSize: 1 });
  t.same(first.schedules.map((x) => x.name), ["hourly"], "by name");
  const second = await s.schedules.listSchedules({ pageSize: 1, pageToken: first.nextPageToken });
  t.same(second.schedules.map((x) => x.name), ["nightly"]);
  t.equal(second.nextPageToken, "", "the last page");

  const paused = (await s.schedules.pauseSchedule({ name: "nightly" })).schedule!;
  t.equal(paused.paused, true);
  t.equal((await s.schedules.pauseSchedule({ name: "nightly" })).schedule?.paused, true, "pausing twice is fine");
  const resumed = (await s.schedules.resumeSchedule({ name: "nightly" })).schedule!;
  t.equal(resumed.paused, false);
  t.ok(timestampDate(resumed.nextFireTime!).getTime() > Date.now());

  await s.schedules.deleteSchedule({ name: "nightly" });
  t.equal((await rejection(() => s.schedules.getSchedule({ name: "nightly" }))).code, Code.NotFound);
  const gone = await rejection(() => s.schedules.deleteSchedule({ name: "nightly" }));
  t.equal(gone.code, Code.NotFound);
  t.match(gone.message, /schedule "nightly" does not exist/);
  await s.schedules.deleteSchedule({ name: "hourly" });
});

t.test("every new field is validated: codes and messages", async (t) => {
  const task = { jobType: "cron.job", input: jsonAny(1) };
  const cases: [string, () => Promise<unknown>, Code, RegExp][] = [
    ["a bad name", () => s.schedules.createSchedule({ name: "9lives", cron: "* * * * *", task }), Code.InvalidArgument, /^\[invalid_argument\] name: "9lives" is not a valid name/],
    ["no cron", () => s.schedules.createSchedule({ name: "c", cron: "", task }), Code.InvalidArgument, /cron: is required: five fields/],
    ["a minute of 61", () => s.schedules.createSchedule({ name: "c", cron: "61 * * * *", task }), Code.InvalidArgument, /cron: "61 \* \* \* \*" is not a valid cron expression: Invalid value for minute: 61/],
    ["four fields", () => s.schedules.createSchedule({ name: "c", cron: "* * * *", task }), Code.InvalidArgument, /cron: "\* \* \* \*" is not a valid cron expression/],
    ["a date that never comes", () => s.schedules.createSchedule({ name: "c", cron: "0 0 30 2 *", task }), Code.InvalidArgument, /cron: "0 0 30 2 \*" never fires/],
    ["an unknown time zone", () => s.schedules.createSchedule({ name: "c", cron: "* * * * *", timeZone: "Europe/Atlantis", task }), Code.InvalidArgument, /time_zone: "Europe\/Atlantis" is not an IANA time zone/],
    ["no task", () => s.schedules.createSchedule({ name: "c", cron: "* * * * *" }), Code.InvalidArgument, /task: is required/],
    ["an unregistered job type (NOT_FOUND, as another namespace's would be)", () => s.schedules.createSchedule({ name: "c", cron: "* * * * *", task: { jobType: "nope", input: jsonAny(1) } }), Code.NotFound, /task\.job_type: job type "nope" is not registered/],
    ["an input of the wrong type", () => s.schedules.createSchedule({ name: "c", cron: "* * * * *", task: { jobType: "cron.typed", input: jsonAny(1) } }), Code.InvalidArgument, /task\.input: is a google\.protobuf\.Value but job type "cron\.typed" takes google\.protobuf\.StringValue/],
    ["a priority out of range", () => s.schedules.createSchedule({ name: "c", cron: "* * * * *", task: { ...task, priority: 1001 } }), Code.InvalidArgument, /task\.priority: is 1001; allowed: -1000 to 1000/],
    ["run_at", () => s.schedules.createSchedule({ name: "c", cron: "* * * * *", task: { ...task, runAt: timestampFromDate(new Date()) } }), Code.InvalidArgument, /task\.run_at: must be unset/],
    ["an idempotency key", () => s.schedules.createSchedule({ name: "c", cron: "* * * * *", task: { ...task, idempotencyKey: "k" } }), Code.InvalidArgument, /task\.idempotency_key: must be unset/],
    ["dedup_by_payload", () => s.schedules.createSchedule({ name: "c", cron: "* * * * *", task: { ...task, dedupByPayload: true } }), Code.InvalidArgument, /task\.dedup_by_payload: must be unset/],
    ["an unknown missed-fire policy", () => s.schedules.createSchedule({ name: "c", cron: "* * * * *", task, missedFirePolicy: 9 as MissedFirePolicy }), Code.InvalidArgument, /missed_fire_policy: 9 is not a policy/],
    ["a bad name to get", () => s.schedules.getSchedule({ name: "" }), Code.InvalidArgument, /name: must not be empty/],
    ["a bad name to pause", () => s.schedules.pauseSchedule({ name: "a b" }), Code.InvalidArgument, /name: "a b" is not a valid name/],
    ["an unknown schedule to resume", () => s.schedules.resumeSchedule({ name: "ghost" }), Code.NotFound, /schedule "ghost" does not exist/],
    ["a page size over 1000", () => s.schedules.listSchedules({ pageSize: 1001 }), Code.InvalidArgument, /page_size: is 1001; allowed: 1 to 1000/],
    ["a foreign page token", () => s.schedules.listSchedules({ pageToken: "bm9wZQ" }), Code.InvalidArgument, /page_token/],
  ];
  for (const [label, call, code, message] of cases) {
    const error = await rejection(call);
    t.equal(error.code, code, `${label}: ${Code[code]}`);
    t.match(error.message, message, label);
  }
  const [row] = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM schedule");
  t.equal(row!.n, 0, "nothing was written");
});

/** Inserts `n` schedules named bulk-1... directly (never due: no next fire time); tests delete them again. */
async function insertBulkSchedules(n: number): Promise<void> {
  await db.query(
    `INSERT INTO schedule (namespace, name, cron, time_zone, job_type, input_type_url, input, priority, max_attempts, backoff_base_ms, backoff_cap_ms)
     SELECT 'default', 'bulk-' || i, '* * * * *', 'UTC', 'cron.job', 'type.googleapis.com/google.protobuf.Value', '\\x'::bytea, 0, 1, 0, 0 FROM generate_series(1, $1::int) AS i`,
    [n],
  );
}

t.test("10,000 schedules per namespace: the next one is RESOURCE_EXHAUSTED", async (t) => {
  await insertBulkSchedules(10_000);
  const full = await rejection(() => s.schedules.createSchedule({ name: "one-more", cron: "* * * * *", task: { jobType: "cron.job", input: jsonAny(1) } }));
  t.equal(full.code, Code.ResourceExhausted);
  t.match(full.message, /the namespace has 10000 schedules, the limit; delete some first/);
  await db.query("DELETE FROM schedule WHERE name LIKE 'bulk-%'");
});

t.test("concurrent creates near the bound: exactly the schedules that fit are created", async (t) => {
  const count = async () => (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM schedule WHERE namespace = 'default'"))[0]!.n;
  // Five places left, whatever earlier tests kept.
  await insertBulkSchedules(10_000 - 5 - (await count()));
  // Yearly: none fires during the test; the calls only race each other's count and insert.
  const results = await Promise.allSettled(
    Array.from({ length: 30 }, (_, i) => s.schedules.createSchedule({ name: `bound-${i}`, cron: "0 0 1 1 *", task: { jobType: "cron.job", input: jsonAny(i) } })),
  );
  const created = results.filter((r) => r.status === "fulfilled").length;
  const refused = results.map((r) => (r.status === "rejected" ? (r.reason as { code?: Code }).code : undefined)).filter((c) => c !== undefined);
  t.equal(created, 5, "five fit under the bound");
  t.same([...new Set(refused)], [Code.ResourceExhausted], "the rest are RESOURCE_EXHAUSTED");
  t.equal(await count(), 10_000, "the namespace holds exactly the bound");
  await db.query("DELETE FROM schedule WHERE name LIKE 'bulk-%' OR name LIKE 'bound-%'");
});

t.test("a schedule fires ordinary tasks that show their schedule and fire time; pause stops it", async (t) => {
  await s.schedules.createSchedule({ name: "tick", cron: "* * * * * *", task: { jobType: "cron.job", input: jsonAny({ tick: true }), priority: 7 } });
  await until(async () => (await fireTimes(db, "tick")).length >= 2);
  const paused = (await s.schedules.pauseSchedule({ name: "tick" })).schedule!;
  await s.server.engine.scheduler.tick(); // a pass after the pause: nothing more
  const times = await fireTimes(db, "tick");
  t.ok(times.every((x) => x % 1_000 === 0), "fire times are whole seconds");
  t.equal(times[1]! - times[0]!, 1_000, "consecutive fire times, one second apart");
  const listed = await s.tasks.listTasks({ jobTypes: ["cron.job"] });
  const task = listed.tasks.at(-1)!;
  t.equal(task.schedule, "tick", "the task names its schedule");
  t.equal(timestampDate(task.scheduleFireTime!).getTime(), times[0], "and its fire time");
  t.equal(task.priority, 7);
  t.equal(task.maxAttempts, 4, "settings resolved at creation from the job type");
  t.same(anyJson(task.input), { tick: true });
  t.equal(paused.lastTaskId !== "" && paused.lastFireTime !== undefined, true, "the schedule shows its last fire and task");
  const [events] = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM task_event e JOIN task t ON t.id = e.task_id WHERE t.schedule_name = 'tick' AND e.kind = 'created'");
  t.equal(events!.n, times.length, "each has its created event, like any task");
  await new Promise((r) => setTimeout(r, 1_200));
  t.equal((await fireTimes(db, "tick")).length, times.length, "paused: no new fire");
  const resumingAt = Date.now();
  const resumed = (await s.schedules.resumeSchedule({ name: "tick" })).schedule!;
  t.ok(timestampDate(resumed.nextFireTime!).getTime() > resumingAt - 100, "resumed from the next fire time after now, not the ones missed while paused");
  await until(async () => (await fireTimes(db, "tick")).length > times.length);
  const after = await fireTimes(db, "tick");
  t.ok(after[times.length]! - times.at(-1)! >= 2_000, "the fires while paused were not made up");
  await s.schedules.deleteSchedule({ name: "tick" });
  t.equal((await s.tasks.getTask({ id: task.id })).task?.schedule, "tick", "a deleted schedule's tasks stay, with its name");
});

t.test("first fire times come from the database's clock: a replica whose clock is behind neither stores a missed one nor loses the fire", async (t) => {
  const task = { jobType: "cron.job", input: jsonAny("skewed") };
  /** Runs `call` while this process's clock (the replica's) reads ten minutes behind the database's. */
  const skewed = async <T>(call: () => Promise<T>): Promise<T> => {
    const RealDate = Date;
    const skewMs = -10 * 60_000;
    class SkewedDate extends RealDate {
      constructor(...args: unknown[]) {
        if (args.length === 0) super(RealDate.now() + skewMs);
        else super(...(args as [string]));
      }
      static override now(): number {
        return RealDate.now() + skewMs;
      }
    }
    globalThis.Date = SkewedDate as DateConstructor;
    try {
      return await call();
    } finally {
      globalThis.Date = RealDate;
    }
  };
  /** The first whole second after a time: a per-second schedule's next fire time. */
  const secondAfter = (ms: number) => Math.floor(ms / 1_000) * 1_000 + 1_000;

  // Created paused, so no scheduler pass moves it before it is read.
  const created = (await skewed(() => s.schedules.createSchedule({ name: "skewed", cron: "* * * * * *", task, paused: true }))).schedule!;
  const createdAt = timestampDate(created.createdAt!).getTime();
  t.equal(timestampDate(created.nextFireTime!).getTime(), secondAfter(createdAt), "create: the first fire time after the database's now (the row's created_at)");

  const resumed = (await skewed(() => s.schedules.resumeSchedule({ name: "skewed" }))).schedule!;
  const resumedAt = timestampDate(resumed.updatedAt!).getTime();
  const next = timestampDate(resumed.nextFireTime!).getTime();
  t.equal(next, secondAfter(resumedAt), "resume: the first fire time after the database's now (the row's updated_at)");
  await until(async () => (await fireTimes(db, "skewed")).length > 0);
  t.equal((await fireTimes(db, "skewed"))[0], next, "that fire made its task: it was on time, not missed");
  await s.schedules.deleteSchedule({ name: "skewed" });
});

t.test("a job type re-registered with another input type: the fire creates nothing and says why", async (t) => {
  await s.jobTypes.registerJobType({ name: "cron.changing" });
  await s.schedules.createSchedule({ name: "changing", cron: "* * * * * *", task: { jobType: "cron.changing", input: jsonAny(1) } });
  await s.jobTypes.registerJobType({ name: "cron.changing", inputType: "google.protobuf.StringValue" });
  await until(async () => (await s.schedules.getSchedule({ name: "changing" })).schedule!.lastError !== "");
  t.match((await s.schedules.getSchedule({ name: "changing" })).schedule!.lastError, /skipped: job type "cron\.changing" now takes google\.protobuf\.StringValue, but the schedule's input is a google\.protobuf\.Value/);
  t.same(await fireTimes(db, "changing"), [], "no task");
  await s.schedules.deleteSchedule({ name: "changing" });
});

t.test("three replicas running one schedule: one task per fire time, none missing", async (t) => {
  const url = await createTestDatabaseUrl(t);
  const replicas = [];
  for (let i = 0; i < 3; i++) replicas.push(await startTestServer(t, { databaseUrl: url, scheduleIntervalMs: 20 }));
  const [r0] = replicas;
  const rdb = r0!.server.engine.database.db;
  await r0!.jobTypes.registerJobType({ name: "cron.job" });
  const firedBy = replicas.map(() => 0);
  replicas.forEach((r, i) => r.server.engine.scheduler.on("scheduler:fired", (report) => (firedBy[i]! += report.schedules.reduce((n, x) => n + x.created, 0))));
  await r0!.schedules.createSchedule({ name: "shared", cron: "* * * * * *", task: { jobType: "cron.job", input: jsonAny("shared") } });
  await until(async () => (await fireTimes(rdb, "shared")).length >= 4, 15_000);
  await r0!.schedules.pauseSchedule({ name: "shared" });
  await Promise.all(replicas.map((r) => r.server.engine.scheduler.tick()));
  const times = await fireTimes(rdb, "shared");
  t.equal(new Set(times).size, times.length, `${times.length} fire times, one task each`);
  t.ok(times.slice(1).every((x, i) => x - times[i]! === 1_000), "every second has its task: none skipped");
  t.equal(firedBy.reduce((a, b) => a + b, 0), times.length, `tasks created per replica: ${firedBy.join(", ")}`);
  // The unique index itself refuses a second task for a fire time.
  await t.rejects(
    rdb.query(
      "INSERT INTO task (namespace, job_type, input_type_url, input, priority, max_attempts, schedule_name, schedule_fire_at) VALUES ('default', 'cron.job', '', '\\x'::bytea, 0, 1, 'shared', $1)",
      [new Date(times[0]!)],
    ),
    { code: "23505", constraint: "task_schedule_fire_idx" },
  );
});

t.test("three replicas' schedulers ticking at the same moment on one due schedule: one task per fire time, none lost", async (t) => {
  const url = await createTestDatabaseUrl(t);
  const replicas: TestServer[] = [];
  // No passes of their own: only the concurrent ticks below run the schedulers.
  for (let i = 0; i < 3; i++) replicas.push(await startTestServer(t, { databaseUrl: url, scheduleIntervalMs: 3_600_000 }));
  const [r0] = replicas;
  const rdb = r0!.server.engine.database.db;
  await r0!.jobTypes.registerJobType({ name: "cron.job" });
  /** Tasks each replica created, per schedule. */
  const created = new Map<string, number[]>();
  replicas.forEach((r, i) =>
    r.server.engine.scheduler.on("scheduler:fired", (report) => {
      for (const x of report.schedules) {
        const counts = created.get(x.name) ?? replicas.map(() => 0);
        counts[i]! += x.created;
        created.set(x.name, counts);
      }
    }),
  );
  for (let round = 0; round < 6; round++) {
    const name = `race-${round}`;
    await r0!.schedules.createSchedule({ name, cron: "* * * * * *", task: { jobType: "cron.job", input: jsonAny(round) } });
    // Eight fire times due at once, all within the grace period, so each is on time and must make one task.
    const [due] = await rdb.query<{ at: Date | string }>(
      "UPDATE schedule SET next_fire_at = date_trunc('second', now()) - interval '8 seconds' WHERE name = $1 RETURNING next_fire_at AS at",
      [name],
    );
    await Promise.all(replicas.map((r) => r.server.engine.scheduler.tick()));
    await r0!.schedules.pauseSchedule({ name });
    const times = await fireTimes(rdb, name);
    t.equal(times[0], new Date(due!.at).getTime(), `round ${round}: the first fire time has its task`);
    t.ok(times.length >= 9, `round ${round}: ${times.length} fire times handled (8 overdue, then up to now)`);
    t.ok(times.slice(1).every((x, i) => x - times[i]! === 1_000), `round ${round}: one task per second, none skipped or doubled`);
    const counts = created.get(name) ?? [];
    t.equal(counts.reduce((x, y) => x + y, 0), times.length, `round ${round}: the three passes together created exactly those tasks (per replica: ${counts.join(", ")})`);
    const [after] = await rdb.query<{ at: Date | string }>("SELECT next_fire_at AS at FROM schedule WHERE name = $1", [name]);
    t.equal(new Date(after!.at).getTime(), times.at(-1)! + 1_000, `round ${round}: the schedule goes on from the next second`);
  }
});

t.test("after downtime, missed fires follow the policy: SKIP creates none, RUN_ONCE exactly one", async (t) => {
  const url = await createTestDatabaseUrl(t);
  const before = await startTestServer(t, { databaseUrl: url, scheduleIntervalMs: 50, scheduleGraceMs: 1_000 });
  const bdb = before.server.engine.database.db;
  await before.jobTypes.registerJobType({ name: "cron.job" });
  const task = { jobType: "cron.job", input: jsonAny("downtime") };
  await before.schedules.createSchedule({ name: "skipper", cron: "* * * * * *", task, missedFirePolicy: MissedFirePolicy.SKIP });
  await before.schedules.createSchedule({ name: "catcher", cron: "* * * * * *", task, missedFirePolicy: MissedFirePolicy.RUN_ONCE });
  await until(async () => (await fireTimes(bdb, "skipper")).length >= 2 && (await fireTimes(bdb, "catcher")).length >= 2);
  await before.server.engine.scheduler.stop();
  const lastBefore = { skipper: Math.max(...(await fireTimes(bdb, "skipper"))), catcher: Math.max(...(await fireTimes(bdb, "catcher"))) };
  await before.server.stop(); // every replica down
  await new Promise((r) => setTimeout(r, 4_000));

  const after = await startTestServer(t, { databaseUrl: url, scheduleIntervalMs: 50, scheduleGraceMs: 1_000 });
  const adb = after.server.engine.database.db;
  const firstPass = new Map<string, { now: Date; fired: FiredSchedule }>();
  after.server.engine.scheduler.on("scheduler:fired", (report) => {
    for (const fired of report.schedules) if (!firstPass.has(fired.name)) firstPass.set(fired.name, { now: report.now, fired });
  });
  await until(() => firstPass.has("skipper") && firstPass.has("catcher"));
  await until(async () => (await fireTimes(adb, "skipper")).some((x) => x > firstPass.get("skipper")!.now.getTime()), 5_000);
  for (const [name, policy] of [["skipper", "SKIP"], ["catcher", "RUN_ONCE"]] as const) {
    const { now, fired } = firstPass.get(name)!;
    t.equal(fired.missed, true, `${name}: the first pass after the restart saw missed fires`);
    const cutoff = now.getTime() - 1_000;
    const during = (await fireTimes(adb, name)).filter((x) => x > lastBefore[name] && x < cutoff);
    t.equal(during.length, policy === "SKIP" ? 0 : 1, `${policy}: ${during.length} task(s) for the ~3 seconds of missed fires`);
    if (policy === "RUN_ONCE") t.equal(during[0], Math.ceil(cutoff / 1_000) * 1_000 - 1_000, "recorded with the latest missed fire time");
    const onTime = (await fireTimes(adb, name)).filter((x) => x >= cutoff);
    t.ok(onTime.length >= 1, `${name}: on-time fires go on as usual`);
  }
});
