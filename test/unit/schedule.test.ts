/** Cron parsing in time zones (with DST), and which fire times of a due schedule produce tasks. */
import t from "tap";
import { dueFires, parseCron, type CronTimes } from "../../src/core/schedule.js";

function times(expression: string, timeZone = "UTC"): CronTimes {
  const parsed = parseCron(expression, timeZone);
  if (!("times" in parsed)) throw new Error(parsed.problem);
  return parsed.times;
}
const iso = (d: Date | null) => d?.toISOString() ?? null;
/** The next n fire times after `from`. */
function fires(cron: CronTimes, from: string, n: number): string[] {
  const out: string[] = [];
  let at: Date | null = new Date(from);
  while (out.length < n && (at = cron.nextAfter(at)) !== null) out.push(at.toISOString());
  return out;
}

t.test("invalid expressions and time zones say what is wrong", async (t) => {
  const cases: [string, string, "cron" | "time_zone", RegExp][] = [
    ["61 * * * *", "UTC", "cron", /not a valid cron expression: Invalid value for minute: 61/],
    ["* * * *", "UTC", "cron", /not a valid cron expression: .*five, six, or seven/],
    ["* * * * * * *", "UTC", "cron", /requires exactly 5 or 6 parts/],
    ["", "UTC", "cron", /is required: five fields/],
    ["   ", "UTC", "cron", /is required/],
    [`${"1,".repeat(100)}1 * * * *`, "UTC", "cron", /is 209 characters; the limit is 200/],
    ["* * * * *", "Mars/Olympus", "time_zone", /"Mars\/Olympus" is not an IANA time zone/],
    ["* * * * *", "", "time_zone", /is not an IANA time zone/],
    ["* * * * *", "x".repeat(65), "time_zone", /is not an IANA time zone/],
  ];
  for (const [expression, zone, field, problem] of cases) {
    const parsed = parseCron(expression, zone);
    t.ok("problem" in parsed, `${JSON.stringify(expression)} in ${JSON.stringify(zone)} is refused`);
    if ("problem" in parsed) {
      t.equal(parsed.field, field);
      t.match(parsed.problem, problem);
    }
  }
  t.equal(iso(times("@hourly").nextAfter(new Date("2024-01-01T00:10:00Z"))), "2024-01-01T01:00:00.000Z", "nicknames work");
  t.equal(times("0 0 31 2 *").nextAfter(new Date("2024-01-01T00:00:00Z")), null, "a date that never exists never fires");
  t.same(fires(times("*/20 * * * * *"), "2024-01-01T00:00:00Z", 3), ["2024-01-01T00:00:20.000Z", "2024-01-01T00:00:40.000Z", "2024-01-01T00:01:00.000Z"], "six fields: seconds first");
});

t.test("time zones and DST", async (t) => {
  const ny = times("0 9 * * *", "America/New_York");
  t.same(fires(ny, "2024-03-08T00:00:00Z", 3), ["2024-03-08T14:00:00.000Z", "2024-03-09T14:00:00.000Z", "2024-03-10T13:00:00.000Z"], "09:00 New York moves from 14:00Z to 13:00Z at the spring change");
  const berlin = times("30 2 * * *", "Europe/Berlin");
  t.same(fires(berlin, "2024-03-30T00:00:00Z", 3), ["2024-03-30T01:30:00.000Z", "2024-03-31T01:00:00.000Z", "2024-04-01T00:30:00.000Z"], "02:30 does not exist on 31 March: it runs at 03:00, the first time after the gap");
  t.same(fires(berlin, "2024-10-26T00:00:00Z", 3), ["2024-10-26T00:30:00.000Z", "2024-10-27T00:30:00.000Z", "2024-10-28T01:30:00.000Z"], "02:30 occurs twice on 27 October: it runs once");
  const half = times("*/30 * * * *", "Europe/Berlin");
  t.same(fires(half, "2024-10-27T00:00:00Z", 4), ["2024-10-27T00:30:00.000Z", "2024-10-27T01:00:00.000Z", "2024-10-27T01:30:00.000Z", "2024-10-27T02:00:00.000Z"], "an interval job runs through the repeated hour (every 30 min of real time)");
  t.equal(iso(berlin.lastBefore(new Date("2024-03-31T12:00:00Z"))), "2024-03-31T01:00:00.000Z", "the latest fire before a time agrees with the forward times");
});

t.test("DST with several fixed times: each runs once when the clock goes back, and the skipped ones once after the gap", async (t) => {
  const between = (cron: CronTimes, from: string, to: string) => fires(cron, from, 10).filter((at) => at < to);
  t.same(between(times("0,30 1 * * *", "America/New_York"), "2024-11-03T00:00:00Z", "2024-11-03T12:00:00Z"), ["2024-11-03T05:00:00.000Z", "2024-11-03T05:30:00.000Z"], "01:00 and 01:30 New York occur twice on 3 November: each runs once");
  t.same(between(times("0 1,2 * * *", "America/New_York"), "2024-11-03T00:00:00Z", "2024-11-03T12:00:00Z"), ["2024-11-03T05:00:00.000Z", "2024-11-03T07:00:00.000Z"], "a list of hours too");
  t.same(between(times("0,30 2 * * *", "Europe/Berlin"), "2024-10-26T22:00:00Z", "2024-10-27T06:00:00Z"), ["2024-10-27T00:00:00.000Z", "2024-10-27T00:30:00.000Z"], "02:00 and 02:30 Berlin on 27 October: once each");
  t.same(between(times("0,30 2 * * *", "America/New_York"), "2024-03-10T00:00:00Z", "2024-03-10T12:00:00Z"), ["2024-03-10T07:00:00.000Z"], "02:00 and 02:30 do not exist on 10 March: one run at 03:00, the first time after the gap");
  t.equal(iso(times("0,30 1 * * *", "America/New_York").lastBefore(new Date("2024-11-03T06:15:00Z"))), "2024-11-03T05:30:00.000Z", "in the repeated hour, the latest fire before is the first pass's 01:30");
});

t.test("dueFires: on-time fires, downtime under SKIP and RUN_ONCE, the batch cap, and the end of a schedule", async (t) => {
  const everyMinute = times("* * * * *");
  const base = { times: everyMinute, graceMs: 60_000, maxFires: 100 };
  const now = new Date("2024-01-01T12:00:30Z");

  const onTime = dueFires({ ...base, nextFireAt: new Date("2024-01-01T12:00:00Z"), now, policy: "skip" });
  t.same(onTime.fires.map(iso), ["2024-01-01T12:00:00.000Z"], "a fire 30 s ago is on time");
  t.equal(onTime.missed, false);
  t.equal(iso(onTime.nextFireAt), "2024-01-01T12:01:00.000Z", "next: the first fire time after now");

  const late = dueFires({ ...base, graceMs: 120_000, nextFireAt: new Date("2024-01-01T11:59:00Z"), now, policy: "skip" });
  t.same(late.fires.map(iso), ["2024-01-01T11:59:00.000Z", "2024-01-01T12:00:00.000Z"], "every fire within the grace period runs, one task each");
  t.equal(late.missed, false);

  const downFrom = new Date("2024-01-01T09:00:00Z"); // three hours of missed fires; cutoff 11:59:30
  const skipped = dueFires({ ...base, nextFireAt: downFrom, now, policy: "skip" });
  t.same(skipped.fires.map(iso), ["2024-01-01T12:00:00.000Z"], "SKIP: only the fires within the grace period");
  t.equal(skipped.missed, true);
  const once = dueFires({ ...base, nextFireAt: downFrom, now, policy: "run_once" });
  t.same(once.fires.map(iso), ["2024-01-01T11:59:00.000Z", "2024-01-01T12:00:00.000Z"], "RUN_ONCE: one fire for all missed ones (the latest), then the on-time ones");
  t.equal(iso(once.nextFireAt), "2024-01-01T12:01:00.000Z");

  const hourly = times("0 * * * *");
  const later = new Date("2024-01-01T12:30:00Z");
  const onceHourly = dueFires({ ...base, times: hourly, nextFireAt: downFrom, now: later, policy: "run_once" });
  t.same(onceHourly.fires.map(iso), ["2024-01-01T12:00:00.000Z"], "with nothing on time, RUN_ONCE is exactly one task, at the latest missed time");
  t.equal(iso(onceHourly.nextFireAt), "2024-01-01T13:00:00.000Z");
  const skipHourly = dueFires({ ...base, times: hourly, nextFireAt: downFrom, now: later, policy: "skip" });
  t.same(skipHourly.fires, [], "with nothing on time, SKIP is no task");
  t.equal(iso(skipHourly.nextFireAt), "2024-01-01T13:00:00.000Z");

  const everySecond = times("* * * * * *");
  const capped = dueFires({ ...base, times: everySecond, nextFireAt: new Date("2024-01-01T12:00:00Z"), now, policy: "skip", maxFires: 10 });
  t.equal(capped.fires.length, 10, "at most maxFires per call");
  t.equal(iso(capped.nextFireAt), "2024-01-01T12:00:10.000Z", "the schedule goes on from the first fire left");
  const zero = dueFires({ ...base, nextFireAt: new Date("2024-01-01T12:00:30Z"), now, policy: "skip", graceMs: 0 });
  t.same(zero.fires.map(iso), ["2024-01-01T12:00:30.000Z"], "a grace of 0: a fire exactly at now is on time");

  const lastOne = times("0 12 1 1 * ", "UTC");
  const ended = dueFires({ ...base, times: { nextAfter: (d) => (d < new Date("2024-01-01T12:00:00Z") ? lastOne.nextAfter(d) : null), lastBefore: lastOne.lastBefore }, nextFireAt: new Date("2024-01-01T12:00:00Z"), now, policy: "skip" });
  t.same(ended.fires.map(iso), ["2024-01-01T12:00:00.000Z"]);
  t.equal(ended.nextFireAt, null, "no fire time left: null");
});
