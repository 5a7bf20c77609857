/** Schedule operations behind the ScheduleService RPCs. */
import type pg from "pg";
import { invalidArgument, TaskwireError } from "../core/errors.js";
import { LIMITS } from "../core/limits.js";
import { parseCron, type ScheduleRecord } from "../core/schedule.js";
import type { Db } from "../store/db.js";
import { withTransaction } from "../store/orm.js";
import { databaseNow } from "../store/sql/database-now.js";
import { scheduleCount } from "../store/sql/schedule-count.js";
import { scheduleCreateLock } from "../store/sql/advisory-locks.js";
import { scheduleDelete } from "../store/sql/schedule-delete.js";
import { scheduleGet } from "../store/sql/schedule-get.js";
import { scheduleInsert, type NewSchedule } from "../store/sql/schedule-insert.js";
import { scheduleList } from "../store/sql/schedule-list.js";
import { scheduleSetPaused } from "../store/sql/schedule-set-paused.js";

/**
 * Schedule operations for one replica. First fire times are computed from the database's clock,
 * the one the schedulers compare them with (schedule-claim-due.ts): a replica whose own clock is
 * behind would store a first fire time the schedulers already call missed, one ahead would delay it.
 */
export class Schedules {
  constructor(
    private readonly db: Db,
    private readonly pool: pg.Pool,
  ) {}

  /**
   * Creates a validated schedule, first firing at its first fire time after now; INVALID_ARGUMENT
   * when there is none, ALREADY_EXISTS for a taken name, RESOURCE_EXHAUSTED past the per-namespace
   * bound (creations in one namespace run one at a time, so concurrent ones cannot pass it together).
   */
  async create(schedule: Omit<NewSchedule, "nextFireAt">): Promise<ScheduleRecord> {
    const times = cronTimes(schedule);
    return withTransaction(this.pool, async (db) => {
      await scheduleCreateLock(db, schedule.namespace);
      if ((await scheduleCount(db, schedule.namespace)) >= LIMITS.maxSchedules) {
        throw new TaskwireError("RESOURCE_EXHAUSTED", `the namespace has ${LIMITS.maxSchedules} schedules, the limit; delete some first`);
      }
      const nextFireAt = times.nextAfter(await databaseNow(db));
      if (nextFireAt === null) throw invalidArgument("cron", `${JSON.stringify(schedule.cron)} never fires (no future date matches it in ${schedule.timeZone})`);
      const created = await scheduleInsert(db, { ...schedule, nextFireAt });
      if (created === undefined) {
        throw new TaskwireError("ALREADY_EXISTS", `schedule ${JSON.stringify(schedule.name)} already exists; delete it first or choose another name`);
      }
      return created;
    });
  }

  /** The schedule, or NOT_FOUND. */
  async get(namespace: string, name: string): Promise<ScheduleRecord> {
    return (await scheduleGet(this.db, namespace, name)) ?? notFound(name);
  }

  /** One page by name, after `afterName`. */
  list(namespace: string, afterName: string | null, limit: number): Promise<ScheduleRecord[]> {
    return scheduleList(this.db, namespace, afterName, limit);
  }

  /** Pauses (idempotent). */
  async pause(namespace: string, name: string): Promise<ScheduleRecord> {
    return (await scheduleSetPaused(this.db, { namespace, name, paused: true, nextFireAt: null })) ?? notFound(name);
  }

  /** Resumes from the first fire time after now (idempotent; a running schedule keeps its next fire time). */
  async resume(namespace: string, name: string): Promise<ScheduleRecord> {
    return withTransaction(this.pool, async (db) => {
      const now = await databaseNow(db);
      const current = (await scheduleGet(db, namespace, name)) ?? notFound(name);
      const parsed = parseCron(current.cron, current.timeZone);
      const next = "times" in parsed ? parsed.times.nextAfter(now) : null;
      return (await scheduleSetPaused(db, { namespace, name, paused: false, nextFireAt: next })) ?? notFound(name);
    });
  }

  /** Deletes; NOT_FOUND when there is none. */
  async delete(namespace: string, name: string): Promise<void> {
    if (!(await scheduleDelete(this.db, namespace, name))) notFound(name);
  }
}

/** The fire times of a schedule's expression, validated by the caller (INVALID_ARGUMENT if it does not parse after all). */
function cronTimes(schedule: { cron: string; timeZone: string }) {
  const parsed = parseCron(schedule.cron, schedule.timeZone);
  if (!("times" in parsed)) throw invalidArgument(parsed.field, parsed.problem);
  return parsed.times;
}

function notFound(name: string): never {
  throw new TaskwireError("NOT_FOUND", `schedule ${JSON.stringify(name)} does not exist in this namespace`);
}
