/** Schedule operations behind the ScheduleService RPCs. */
import { TaskwireError } from "../core/errors.js";
import { LIMITS } from "../core/limits.js";
import { parseCron, type ScheduleRecord } from "../core/schedule.js";
import type { Db } from "../store/db.js";
import { scheduleCount } from "../store/sql/schedule-count.js";
import { scheduleDelete } from "../store/sql/schedule-delete.js";
import { scheduleGet } from "../store/sql/schedule-get.js";
import { scheduleInsert, type NewSchedule } from "../store/sql/schedule-insert.js";
import { scheduleList } from "../store/sql/schedule-list.js";
import { scheduleSetPaused } from "../store/sql/schedule-set-paused.js";

/** Schedule operations for one replica. */
export class Schedules {
  constructor(private readonly db: Db) {}

  /** Creates a validated schedule; ALREADY_EXISTS for a taken name, RESOURCE_EXHAUSTED past the per-namespace bound. */
  async create(schedule: NewSchedule): Promise<ScheduleRecord> {
    if ((await scheduleCount(this.db, schedule.namespace)) >= LIMITS.maxSchedules) {
      throw new TaskwireError("RESOURCE_EXHAUSTED", `the namespace has ${LIMITS.maxSchedules} schedules, the limit; delete some first`);
    }
    const created = await scheduleInsert(this.db, schedule);
    if (created === undefined) {
      throw new TaskwireError("ALREADY_EXISTS", `schedule ${JSON.stringify(schedule.name)} already exists; delete it first or choose another name`);
    }
    return created;
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
    const current = await this.get(namespace, name);
    const parsed = parseCron(current.cron, current.timeZone);
    const next = "times" in parsed ? parsed.times.nextAfter(new Date()) : null;
    return (await scheduleSetPaused(this.db, { namespace, name, paused: false, nextFireAt: next })) ?? notFound(name);
  }

  /** Deletes; NOT_FOUND when there is none. */
  async delete(namespace: string, name: string): Promise<void> {
    if (!(await scheduleDelete(this.db, namespace, name))) notFound(name);
  }
}

function notFound(name: string): never {
  throw new TaskwireError("NOT_FOUND", `schedule ${JSON.stringify(name)} does not exist in this namespace`);
}
