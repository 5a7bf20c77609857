import { defineEntity, p } from "@mikro-orm/postgresql";

const JobTypeSchema = defineEntity({
  name: "JobType",
  tableName: "job_type",
  properties: {
    namespace: p.text().primary(),
    name: p.text().primary(),
    inputType: p.text().default(""),
    outputType: p.text().default(""),
    descriptors: p.blob().nullable(),
    defaultPriority: p.integer().default(0),
    defaultMaxAttempts: p.integer().default(3),
    defaultTimeoutMs: p.integer().nullable(),
    backoffBaseMs: p.integer().default(1000),
    backoffCapMs: p.integer().default(600000),
    leaseMs: p.integer().default(30000),
    retentionMs: p.bigint("number").nullable().defaultRaw("604800000"),
    inlineModule: p.text().nullable(),
    dedupWindowMs: p.bigint("number").nullable(),
    maxPayloadBytes: p.integer().nullable(),
    rateMaxStarts: p.integer().nullable(),
    rateWindowMs: p.integer().nullable(),
    maxRunning: p.integer().nullable(),
    maxRunningPerKey: p.integer().nullable(),
    createdAt: p.datetime().defaultRaw("now()"),
    updatedAt: p.datetime().defaultRaw("now()"),
  },
  primaryKeys: ["namespace", "name"],
});

/** A kind of work, with its payload types and task defaults (one row per namespace and name). */
export class JobType extends JobTypeSchema.class {}
JobTypeSchema.setClass(JobType);
