import { defineEntity, p } from "@mikro-orm/postgresql";

const TaskSchema = defineEntity({
  name: "Task",
  tableName: "task",
  properties: {
    id: p.bigint("string").primary().generated("identity"),
    namespace: p.text(),
    jobType: p.text(),
    state: p.text().default("pending"),
    inputTypeUrl: p.text(),
    input: p.blob(),
    outputTypeUrl: p.text().nullable(),
    output: p.blob().nullable(),
    priority: p.integer(),
    attempt: p.integer().default(0),
    maxAttempts: p.integer(),
    timeoutMs: p.integer().nullable(),
    runAt: p.datetime().defaultRaw("now()"),
    workerId: p.text().nullable(),
    leaseToken: p.uuid().nullable(),
    lastError: p.text().nullable(),
    createdAt: p.datetime().defaultRaw("now()"),
    updatedAt: p.datetime().defaultRaw("now()"),
    finishedAt: p.datetime().nullable(),
    backoffBaseMs: p.integer().default(1000),
    backoffCapMs: p.integer().default(600000),
    leaseExpiresAt: p.datetime().nullable(),
    timeoutAt: p.datetime().nullable(),
    progress: p.double().default(0),
    progressMessage: p.text().default(""),
    checkpoint: p.blob().nullable(),
    idempotencyKey: p.text().nullable(),
    keyReleased: p.boolean().default(false),
    scheduleName: p.text().nullable(),
    scheduleFireAt: p.datetime().nullable(),
    hasDependencies: p.boolean().default(false),
    hasDependents: p.boolean().default(false),
    unmetDependencies: p.integer().default(0),
    concurrencyKey: p.text().nullable(),
    limited: p.boolean().default(false),
  },
});

/**
 * A unit of work. Its state moves only through the guarded statements in src/store/sql (claim,
 * complete, fail, cancel), never through this entity: it exists for schema checks and admin reads.
 */
export class Task extends TaskSchema.class {}
TaskSchema.setClass(Task);
