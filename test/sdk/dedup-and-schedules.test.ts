/** The SDK's idempotency options and schedule methods against a real server. */
import { StringValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import t from "tap";
import { createClient, defineJob, MissedFirePolicy } from "../../src/sdk/index.js";
import { startTestServer } from "../helpers/server.js";

const s = await startTestServer(t, { scheduleIntervalMs: 100 });
const client = createClient({ baseUrl: s.url });
t.teardown(() => client.close());

const mail = defineJob({ name: "sdk.mail", input: StringValueSchema, output: "json", defaults: { dedupWindowMs: 60_000 }, handler: async () => null });
const report = defineJob({ name: "sdk.report", input: "json", output: "json", handler: async () => null });

t.test("submit with idempotencyKey or dedupByPayload; the job's dedup window is registered", async (t) => {
  const registered = await client.registerJobType(mail);
  t.equal(registered.jobType?.dedupWindow?.seconds, 60n, "defaults.dedupWindowMs reaches the job type");
  const first = await client.submit(mail, { value: "hello" }, { idempotencyKey: "welcome-42" });
  const again = await client.submit(mail, { value: "other" }, { idempotencyKey: "welcome-42" });
  t.equal(again.id, first.id);
  t.same([first.deduplicated, again.deduplicated], [false, true]);
  const [x, y] = await client.submitBatch(mail, [{ value: "same" }, { value: "same" }], { dedupByPayload: true });
  t.equal(y!.id, x!.id, "equal typed inputs in one batch: one task");
  t.equal(y!.deduplicated, true);
  await client.registerJobType({ name: "sdk.spec", dedupWindowMs: 5_000 });
  t.equal((await client.raw.jobTypes.getJobType({ name: "sdk.spec" })).jobType?.dedupWindow?.seconds, 5n, "JobTypeSpec.dedupWindowMs too");
});

t.test("createSchedule / getSchedule / listSchedules / pause / resume / delete", async (t) => {
  await client.registerJobType(report);
  const created = await client.createSchedule("sdk-every-second", report, { kind: "sdk" }, { cron: "* * * * * *", timeZone: "Asia/Tokyo", missedFires: "run_once", priority: 4 });
  t.equal(created.missedFirePolicy, MissedFirePolicy.RUN_ONCE);
  t.equal(created.timeZone, "Asia/Tokyo");
  t.equal(created.task?.priority, 4);
  const deadline = Date.now() + 10_000;
  let fired = (await client.listTasks({ jobTypes: ["sdk.report"] })).tasks;
  while (fired.length === 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    fired = (await client.listTasks({ jobTypes: ["sdk.report"] })).tasks;
  }
  t.equal(fired[0]?.schedule, "sdk-every-second", "it fires tasks that name it");
  t.equal((await client.getSchedule("sdk-every-second")).name, "sdk-every-second");
  t.same((await client.listSchedules()).schedules.map((x) => x.name), ["sdk-every-second"]);
  t.equal((await client.pauseSchedule("sdk-every-second")).paused, true);
  t.equal((await client.resumeSchedule("sdk-every-second")).paused, false);
  await client.deleteSchedule("sdk-every-second");
  const error = await client.getSchedule("sdk-every-second").catch((e: unknown) => e);
  t.ok(error instanceof ConnectError && error.code === Code.NotFound, "deleted: NOT_FOUND");
  const invalid = await client.createSchedule("sdk-bad", report, {}, { cron: "every day" }).catch((e: unknown) => e);
  t.ok(invalid instanceof ConnectError && invalid.code === Code.InvalidArgument && /cron: "every day" is not a valid cron expression/.test(invalid.message), "an invalid expression: INVALID_ARGUMENT with the reason");
});
