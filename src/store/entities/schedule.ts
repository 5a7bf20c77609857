import { defineEntity, p } from "@mikro-orm/postgresql";

const ScheduleSchema = defineEntity({
  name: "Schedule",
  tableName: "schedule",
  properties: {
    namespace: p.text().primary(),
    name: p.text().primary(),
    cron: p.text(),
    timeZone: p.text(),
    jobType: p.text(),
    inputTypeUrl: p.text(),
    input: p.blob(),
    priority: p.integer(),
    maxAttempts: p.integer(),
    timeoutMs: p.integer().nullable(),
    backoffBaseMs: p.integer(),
    backoffCapMs: p.integer(),
    missedPolicy: p.text().default("skip"),
    paused: p.boolean().default(false),
    nextFireAt: p.datetime().nullable(),
    lastFireAt: p.datetime().nullable(),
    lastTaskId: p.bigint("string").nullable(),
    lastError: p.text().nullable(),
    concurrencyKey: p.text().nullable(),
    createdAt: p.datetime().defaultRaw("now()"),
    updatedAt: p.datetime().defaultRaw("now()"),
  },
  primaryKeys: ["namespace", "name"],
});

/**
 * A cron schedule. Written and read through src/store/sql/schedule-*.ts (the scheduler locks due
 * rows with SKIP LOCKED); the entity exists for schema checks.
 */
export class Schedule extends ScheduleSchema.class {}
ScheduleSchema.setClass(Schedule);
