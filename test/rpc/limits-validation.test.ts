/** The limits' fields: validation codes and messages, round trips (0 is a value, unset is none), and keys on tasks and schedules. */
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import t from "tap";
import { until } from "../helpers/limits.js";
import { jsonAny } from "../helpers/payload.js";
import { rejection } from "../helpers/rejection.js";
import { startTestServer } from "../helpers/server.js";
import { createClient, defineJob } from "../../src/sdk/index.js";

const s = await startTestServer(t, { scheduleIntervalMs: 200 });
const db = s.server.engine.database.db;
await s.jobTypes.registerJobType({ name: "plain" });

t.test("RegisterJobType refuses bad limits with INVALID_ARGUMENT naming the field and what is allowed", async (t) => {
  const cases: [string, Parameters<typeof s.jobTypes.registerJobType>[0], RegExp][] = [
    ["max_starts missing", { name: "bad", rateLimit: { window: durationFromMs(1_000) } }, /^rate_limit\.max_starts: is required: how many attempts may start per window, 0 to 1000000$/],
    ["window missing", { name: "bad", rateLimit: { maxStarts: 5 } }, /^rate_limit\.window: is required: the length of the window, 1000 ms to 86400000 ms$/],
    ["window too short", { name: "bad", rateLimit: { maxStarts: 5, window: durationFromMs(999) } }, /^rate_limit\.window: is 999 ms; allowed: 1000 ms to 86400000 ms/],
    ["window too long", { name: "bad", rateLimit: { maxStarts: 5, window: durationFromMs(86_400_001) } }, /^rate_limit\.window: is 86400001 ms; allowed/],
    ["window not whole ms", { name: "bad", rateLimit: { maxStarts: 5, window: { seconds: 2n, nanos: 500 } } }, /^rate_limit\.window: .* in whole milliseconds$/],
    ["max_starts negative", { name: "bad", rateLimit: { maxStarts: -1, window: durationFromMs(1_000) } }, /^rate_limit\.max_starts: is -1; allowed: 0 to 1000000$/],
    ["max_starts too many", { name: "bad", rateLimit: { maxStarts: 1_000_001, window: durationFromMs(1_000) } }, /^rate_limit\.max_starts: is 1000001; allowed: 0 to 1000000$/],
    ["max_running negative", { name: "bad", maxRunning: -1 }, /^max_running: is -1; allowed: 0 to 100000 \(0: none start\), or unset for no limit$/],
    ["max_running too many", { name: "bad", maxRunning: 100_001 }, /^max_running: is 100001; allowed: 0 to 100000/],
    ["max_running_per_key negative", { name: "bad", maxRunningPerKey: -3 }, /^max_running_per_key: is -3; allowed: 0 to 100000/],
    ["max_running_per_key too many", { name: "bad", maxRunningPerKey: 100_001 }, /^max_running_per_key: is 100001; allowed: 0 to 100000/],
  ];
  for (const [what, request, message] of cases) {
    const error = await rejection(() => s.jobTypes.registerJobType(request));
    t.equal(error.code, Code.InvalidArgument, `${what}: INVALID_ARGUMENT`);
    t.match(error.rawMessage, message, `${what}: ${error.rawMessage}`);
  }
  t.equal((await db.query("SELECT 1 FROM job_type WHERE name = 'bad'")).length, 0, "nothing written");
});

t.test("limits round-trip; 0 is a value; unset means no limit; re-registering without them removes them", async (t) => {
  const { jobType } = await s.jobTypes.registerJobType({ name: "lim.rt", rateLimit: { maxStarts: 0, window: durationFromMs(90_000) }, maxRunning: 0, maxRunningPerKey: 0 });
  t.equal(jobType!.rateLimit?.maxStarts, 0, "max_starts 0 kept");
  t.equal(jobType!.rateLimit?.window?.seconds, 90n);
  t.equal(jobType!.maxRunning, 0, "max_running 0 kept (not replaced by 'no limit')");
  t.equal(jobType!.maxRunningPerKey, 0);
  const got = (await s.jobTypes.getJobType({ name: "lim.rt" })).jobType!;
  t.same([got.rateLimit?.maxStarts, got.maxRunning, got.maxRunningPerKey], [0, 0, 0], "GetJobType shows them");
  const listed = (await s.jobTypes.listJobTypes({})).jobTypes.find((x) => x.name === "lim.rt")!;
  t.equal(listed.maxRunningPerKey, 0, "ListJobTypes too");
  const cleared = (await s.jobTypes.registerJobType({ name: "lim.rt" })).jobType!;
  t.same([cleared.rateLimit, cleared.maxRunning, cleared.maxRunningPerKey], [undefined, undefined, undefined], "registered without them: no limits");
  const plain = (await s.jobTypes.getJobType({ name: "plain" })).jobType!;
  t.same([plain.rateLimit, plain.maxRunning, plain.maxRunningPerKey], [undefined, undefined, undefined], "a job type registered without limits has none");
});

t.test("concurrency_key: 1 to 128 visible ASCII characters, checked on Submit, SubmitBatch and CreateSchedule", async (t) => {
  const bad: [string, string, RegExp][] = [
    ["too long", "k".repeat(129), /concurrency_key: is 129 characters; allowed: 1 to 128$/],
    ["a space", "customer 42", /concurrency_key: contains " "; use visible ASCII characters only \(letters, digits, punctuation; no spaces\), e\.g\. "customer-42"$/],
    ["non-ASCII", "kundé", /concurrency_key: contains "é"/],
    ["a control character", "a\u0007b", /concurrency_key: contains "\\u0007"/],
  ];
  for (const [what, key, message] of bad) {
    const one = await rejection(() => s.tasks.submit({ task: { jobType: "plain", input: jsonAny(1), concurrencyKey: key } }));
    t.equal(one.code, Code.InvalidArgument, `Submit, ${what}: INVALID_ARGUMENT`);
    t.match(one.rawMessage, new RegExp(`^task\\.${message.source}`), `Submit, ${what}: ${one.rawMessage}`);
    const batch = await rejection(() => s.tasks.submitBatch({ tasks: [{ jobType: "plain", input: jsonAny(1) }, { jobType: "plain", input: jsonAny(2), concurrencyKey: key }] }));
    t.match(batch.rawMessage, new RegExp(`^tasks\\[1\\]\\.${message.source}`), `SubmitBatch names the task: ${batch.rawMessage}`);
  }
  const schedule = await rejection(() => s.schedules.createSchedule({ name: "bad-key", cron: "0 3 * * *", task: { jobType: "plain", input: jsonAny(1), concurrencyKey: "with space" } }));
  t.equal(schedule.code, Code.InvalidArgument);
  t.match(schedule.rawMessage, /^task\.concurrency_key: contains " "/);
  t.equal((await db.query("SELECT 1 FROM task")).length, 0, "nothing was created");
  const max = "k".repeat(128);
  const ok = (await s.tasks.submit({ task: { jobType: "plain", input: jsonAny(1), concurrencyKey: max } })).task!;
  t.equal(ok.concurrencyKey, max, "128 characters are fine, and the task shows its key");
  const punct = (await s.tasks.submit({ task: { jobType: "plain", input: jsonAny(1), concurrencyKey: "tenant:7/user@x.y-z_1" } })).task!;
  t.equal((await s.tasks.getTask({ id: punct.id })).task!.concurrencyKey, "tenant:7/user@x.y-z_1", "GetTask shows it");
  const none = (await s.tasks.submit({ task: { jobType: "plain", input: jsonAny(1) } })).task!;
  t.equal(none.concurrencyKey, "", "empty: no key");
  const [row] = await db.query<{ k: string | null }>("SELECT concurrency_key AS k FROM task WHERE id = $1", [none.id]);
  t.equal(row!.k, null, "stored as no key");
});

t.test("a schedule's tasks carry its concurrency key and obey their job type's limits", async (t) => {
  await s.jobTypes.registerJobType({ name: "sched.limited", maxRunningPerKey: 1 });
  const { schedule } = await s.schedules.createSchedule({ name: "every-second", cron: "* * * * * *", task: { jobType: "sched.limited", input: jsonAny(1), concurrencyKey: "tenant-9" } });
  t.equal(schedule!.task!.concurrencyKey, "tenant-9", "the schedule shows the key of its tasks");
  t.teardown(() => s.schedules.deleteSchedule({ name: "every-second" }).catch(() => undefined)); // if the test failed before deleting it
  await until(async () => (await db.query("SELECT 1 FROM task WHERE job_type = 'sched.limited'")).length >= 2, 10_000, "two fires");
  await s.schedules.deleteSchedule({ name: "every-second" });
  const rows = await db.query<{ k: string; limited: boolean }>("SELECT concurrency_key AS k, limited FROM task WHERE job_type = 'sched.limited'");
  t.ok(rows.every((r) => r.k === "tenant-9" && r.limited), "each fire's task has the key, and is claimed by the limited claim");
  const claimed = (await s.workers.claimTasks({ workerId: "sched", jobTypes: ["sched.limited"], maxTasks: 10 })).assignments;
  t.equal(claimed.length, 1, `${rows.length} tasks of one key, max_running_per_key 1: one claimed`);
});

t.test("the SDK sends limits from a job definition or a spec, and a task's concurrency key", async (t) => {
  const client = createClient({ baseUrl: s.url });
  t.teardown(() => client.close());
  const job = defineJob({ name: "sdk.limited", input: "json", output: "json", handler: async () => {}, defaults: { maxRunningPerKey: 1, maxRunning: 0, rateLimit: { maxStarts: 7, windowMs: 2_000 } } });
  const { jobType } = await client.registerJobType(job);
  t.same([jobType!.maxRunningPerKey, jobType!.maxRunning, jobType!.rateLimit?.maxStarts, jobType!.rateLimit?.window?.seconds], [1, 0, 7, 2n], "limits from defineJob's defaults, 0 included");
  const spec = (await client.registerJobType({ name: "sdk.spec", maxRunning: 3 })).jobType!;
  t.same([spec.maxRunning, spec.maxRunningPerKey, spec.rateLimit], [3, undefined, undefined], "from a JobTypeSpec; unset ones stay unset");
  const task = await client.submit(job, { n: 1 }, { concurrencyKey: "acct-1" });
  t.equal(task.concurrencyKey, "acct-1");
  const [batched] = await client.submitBatch(job, [{ n: 2 }], { concurrencyKey: "acct-2" });
  t.equal(batched!.concurrencyKey, "acct-2");
});
