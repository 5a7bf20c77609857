import { defineEntity, p } from "@mikro-orm/postgresql";

const JobTypeLimiterSchema = defineEntity({
  name: "JobTypeLimiter",
  tableName: "job_type_limiter",
  properties: {
    namespace: p.text().primary(),
    jobType: p.text().primary(),
    keyCursor: p.text().nullable(),
    repairedAt: p.datetime().nullable(),
  },
  primaryKeys: ["namespace", "jobType"],
});

/**
 * The round-robin position of a limited job type's claims over its concurrency keys ("" is the
 * group of tasks without a key), and when the limited claim last marked the job type's tasks
 * (task-limited-repair.ts). Written only by the limited claim.
 */
export class JobTypeLimiter extends JobTypeLimiterSchema.class {}
JobTypeLimiterSchema.setClass(JobTypeLimiter);
