/**
 * Fires cron schedules. Every replica runs one, with no leader: each pass locks the due schedules
 * with FOR UPDATE SKIP LOCKED (so replicas take disjoint ones), creates one task per fire time
 * (the unique index on (namespace, schedule, fire time) refuses any second one) and advances the
 * schedules, all in one short transaction. The interval is injectable so tests run fast.
 */
import { EventEmitter } from "node:events";
import type pg from "pg";
import type { Logger } from "pino";
import { dueFires, parseCron, type ScheduleRecord } from "../core/schedule.js";
import { MaintenanceLoop } from "./maintenance-loop.js";
import { withTransaction } from "../store/orm.js";
import { scheduleAdvance, type ScheduleAdvance } from "../store/sql/schedule-advance.js";
import { scheduleClaimDue, type DueSchedule } from "../store/sql/schedule-claim-due.js";
import { taskInsertScheduled, type ScheduledTask } from "../store/sql/task-insert-scheduled.js";

/** Schedules one transaction handles. */
const BATCH = 100;
/** On-time fires of one schedule per pass (a per-second schedule has at most grace/1 s of them). */
const MAX_FIRES = 100;
const JSON_TYPES = new Set(["google.protobuf.Value", "google.protobuf.Struct", "google.protobuf.ListValue"]);

/** What one transaction did to one schedule. */
export interface FiredSchedule {
  namespace: string;
  name: string;
  /** The fire times handled, oldest first (for RUN_ONCE after downtime, the first stands for all missed ones). */
  fires: Date[];
  /** Tasks created (fewer than fires only if another replica created some first). */
  created: number;
  /** True when missed fire times were skipped or folded into one. */
  missed: boolean;
  /** Why nothing was fired, if so. */
  error: string | null;
}

/** Typed events for tests and metrics. */
export interface SchedulerEvents {
  /** One transaction's work: the database time it used and each schedule it handled. */
  "scheduler:fired": [{ now: Date; schedules: FiredSchedule[] }];
}

/** Scheduler settings. */
export interface SchedulerOptions {
  /** How often to look for due schedules (ms). */
  intervalMs: number;
  /** A fire time older than this when first seen was missed (ms); see MissedFirePolicy. */
  graceMs: number;
}

/** The scheduler of one replica. */
export class Scheduler extends EventEmitter<SchedulerEvents> {
  private readonly loop: MaintenanceLoop;

  constructor(
    private readonly pool: pg.Pool,
    private readonly logger: Logger,
    private readonly options: SchedulerOptions,
  ) {
    super();
    this.loop = new MaintenanceLoop({ intervalMs: options.intervalMs, logger, what: "schedule pass", batch: () => this.fireBatch() });
  }

  /** One pass: handles due schedules until fewer than a full batch are due. */
  tick(): Promise<void> {
    return this.loop.run();
  }

  private async fireBatch(): Promise<boolean> {
    const { handled, report } = await withTransaction(this.pool, (db) => this.fire(db));
    if (report.schedules.length > 0) this.emit("scheduler:fired", report);
    return handled >= BATCH;
  }

  /** Locks due schedules, creates their tasks, advances them (one transaction, committed by the caller). */
  private async fire(db: Parameters<typeof scheduleClaimDue>[0]): Promise<{ handled: number; report: { now: Date; schedules: FiredSchedule[] } }> {
    const due = await scheduleClaimDue(db, BATCH);
    const now = due[0]?.now ?? new Date();
    const tasks: ScheduledTask[] = [];
    const plans: { due: DueSchedule; fires: Date[]; missed: boolean; advance: ScheduleAdvance }[] = [];
    for (const item of due) {
      const s = item.schedule;
      const parsed = parseCron(s.cron, s.timeZone);
      if (!("times" in parsed)) {
        // Valid when created; only a changed cron library could refuse it now. Stop firing, say why.
        plans.push({ due: item, fires: [], missed: false, advance: { ...key(s), nextFireAt: null, lastFireAt: null, lastTaskId: null, lastError: `the expression no longer parses: ${parsed.problem}` } });
        continue;
      }
      const result = dueFires({ times: parsed.times, nextFireAt: s.nextFireAt, now: item.now, policy: s.missedPolicy, graceMs: this.options.graceMs, maxFires: MAX_FIRES });
      const problem = inputProblem(s, item.jobInputType);
      if (problem === null) for (const fireAt of result.fires) tasks.push(scheduledTask(s, fireAt));
      plans.push({
        due: item,
        fires: problem === null ? result.fires : [],
        missed: result.missed,
        advance: { ...key(s), nextFireAt: result.nextFireAt, lastFireAt: null, lastTaskId: null, lastError: problem === null || result.fires.length === 0 ? null : `fire at ${result.fires.at(-1)!.toISOString()} skipped: ${problem}` },
      });
    }
    const created = tasks.length === 0 ? [] : await taskInsertScheduled(db, tasks);
    const createdBy = new Map<string, { id: string; fireAt: Date }[]>();
    for (const row of created) {
      const k = `${row.namespace}\u0000${row.schedule_name}`;
      createdBy.set(k, [...(createdBy.get(k) ?? []), { id: row.id, fireAt: new Date(row.schedule_fire_at) }]);
    }
    const schedules: FiredSchedule[] = [];
    for (const plan of plans) {
      const s = plan.due.schedule;
      const mine = (createdBy.get(`${s.namespace}\u0000${s.name}`) ?? []).sort((x, y) => x.fireAt.getTime() - y.fireAt.getTime());
      const last = mine.at(-1);
      if (last !== undefined) {
        plan.advance.lastFireAt = last.fireAt;
        plan.advance.lastTaskId = last.id;
      }
      schedules.push({ namespace: s.namespace, name: s.name, fires: plan.fires, created: mine.length, missed: plan.missed, error: plan.advance.lastError });
    }
    if (plans.length > 0) await scheduleAdvance(db, plans.map((p) => p.advance));
    for (const fired of schedules) {
      if (fired.error !== null) this.logger.warn({ schedule: fired.name, namespace: fired.namespace, error: fired.error }, "schedule fired no task");
    }
    return { handled: due.length, report: { now, schedules } };
  }

  /** Stops the loop (waits for a pass in progress). */
  stop(): Promise<void> {
    return this.loop.stop();
  }
}

function key(s: ScheduleRecord) {
  return { namespace: s.namespace, name: s.name };
}

/** The task of one fire time: the schedule's stored task settings. */
function scheduledTask(s: ScheduleRecord, fireAt: Date): ScheduledTask {
  return {
    namespace: s.namespace,
    jobType: s.jobType,
    input: s.input,
    priority: s.priority,
    maxAttempts: s.maxAttempts,
    timeoutMs: s.timeoutMs,
    backoffBaseMs: s.backoffBaseMs,
    backoffCapMs: s.backoffCapMs,
    concurrencyKey: s.concurrencyKey,
    scheduleName: s.name,
    fireAt,
  };
}

/** Why the schedule's input no longer fits its job type (re-registered with another input type), or null. */
function inputProblem(s: ScheduleRecord, jobInputType: string | null): string | null {
  if (jobInputType === null) return `job type ${JSON.stringify(s.jobType)} no longer exists`;
  const actual = s.input.typeUrl.slice(s.input.typeUrl.lastIndexOf("/") + 1);
  if (jobInputType === "" ? JSON_TYPES.has(actual) : actual === jobInputType) return null;
  return `job type ${JSON.stringify(s.jobType)} now takes ${jobInputType === "" ? "JSON" : jobInputType}, but the schedule's input is a ${actual}`;
}
