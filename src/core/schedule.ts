/**
 * Cron schedules: parsing (croner, pinned: it reads expressions in IANA time zones and handles DST
 * the way Vixie cron does) and the pure rule that decides which fire times of a due schedule
 * produce tasks.
 */
import { Cron } from "croner";
import { LIMITS } from "./limits.js";
import type { Payload } from "./task.js";

/** What a schedule does about fire times no replica got to in time. */
export type MissedFirePolicy = "skip" | "run_once";

/** A schedule as stored. */
export interface ScheduleRecord {
  namespace: string;
  name: string;
  cron: string;
  timeZone: string;
  jobType: string;
  input: Payload;
  priority: number;
  maxAttempts: number;
  timeoutMs: number | null;
  backoffBaseMs: number;
  backoffCapMs: number;
  /** The concurrency key of the tasks it submits, or null. */
  concurrencyKey: string | null;
  missedPolicy: MissedFirePolicy;
  paused: boolean;
  /** Null: the expression never fires again. */
  nextFireAt: Date | null;
  lastFireAt: Date | null;
  lastTaskId: string | null;
  lastError: string | null;
  createdAt: Date;
  updatedAt: Date;
}

/** The fire times of one expression in one time zone. */
export interface CronTimes {
  /** The first fire time strictly after `after`, or null when there is none. */
  nextAfter(after: Date): Date | null;
  /** The last fire time strictly before `before`, or null when there is none. */
  lastBefore(before: Date): Date | null;
}

/** Parses an expression (5 fields, or 6 with seconds first) in a time zone; a problem says what is wrong. */
export function parseCron(expression: string, timeZone: string): { times: CronTimes } | { problem: string; field: "cron" | "time_zone" } {
  if (timeZone.length > LIMITS.maxTimeZoneChars || !isTimeZone(timeZone)) {
    return { field: "time_zone", problem: `${JSON.stringify(timeZone.slice(0, 80))} is not an IANA time zone such as "UTC" or "Europe/Berlin"` };
  }
  if (expression.trim() === "") return { field: "cron", problem: "is required: five fields (minute hour day-of-month month day-of-week) or six with seconds first" };
  if (expression.length > LIMITS.maxCronChars) return { field: "cron", problem: `is ${expression.length} characters; the limit is ${LIMITS.maxCronChars}` };
  let cron: Cron;
  try {
    // A job without a function schedules nothing: croner only evaluates the pattern here.
    // "no-wildcard": a time with no * or / in its second, minute and hour fields is a fixed time,
    // also with several values ("0,30 1 * * *"): it runs once when the clock goes back, and at
    // the end of the gap when the clock skips it. (Croner's default counts only single values,
    // so "0,30 1" ran twice in a repeated hour and not at all in a skipped one.)
    cron = new Cron(expression, { timezone: timeZone, mode: "5-or-6-parts", fixedTimeRule: "no-wildcard" });
  } catch (error) {
    return { field: "cron", problem: `${JSON.stringify(expression)} is not a valid cron expression: ${(error as Error).message.replace(/^CronPattern: /, "")}` };
  }
  const times: CronTimes = {
    nextAfter: (after) => cron.nextRun(after),
    lastBefore: (before) => cron.previousRuns(1, before)[0] ?? null,
  };
  return { times };
}

/** True for a time zone name Intl knows (the same tables croner uses). */
function isTimeZone(name: string): boolean {
  if (name === "") return false;
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

/** Which fire times of a due schedule produce tasks, and where the schedule goes on from. */
export interface DueFires {
  /** Fire times to create tasks for, oldest first. */
  fires: Date[];
  /** True when fire times older than the grace period were passed over (SKIP) or folded into one (RUN_ONCE). */
  missed: boolean;
  /** The next fire time not handled yet; null when the expression never fires again. */
  nextFireAt: Date | null;
}

/**
 * The fires of a schedule whose next fire time has come. A fire time is on time while at most
 * `graceMs` have passed since it; older ones were missed (downtime): SKIP drops them, RUN_ONCE
 * turns all of them into one fire at the latest missed time. At most `maxFires` on-time fires are
 * returned; the schedule then goes on from the first one left.
 */
export function dueFires(params: { times: CronTimes; nextFireAt: Date; now: Date; policy: MissedFirePolicy; graceMs: number; maxFires: number }): DueFires {
  const { times, now, policy, graceMs, maxFires } = params;
  const cutoff = new Date(now.getTime() - graceMs);
  const fires: Date[] = [];
  let missed = false;
  let next: Date | null = params.nextFireAt;
  if (next.getTime() < cutoff.getTime()) {
    missed = true;
    if (policy === "run_once") {
      const latest = times.lastBefore(cutoff);
      fires.push(latest !== null && latest.getTime() >= next.getTime() ? latest : next);
    }
    // The first fire time at or after the cutoff (fire times are whole seconds).
    next = times.nextAfter(new Date(cutoff.getTime() - 1));
  }
  while (next !== null && next.getTime() <= now.getTime() && fires.length < maxFires) {
    fires.push(next);
    next = times.nextAfter(next);
  }
  return { fires, missed, nextFireAt: next };
}
