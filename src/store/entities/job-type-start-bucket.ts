import { defineEntity, p } from "@mikro-orm/postgresql";

const JobTypeStartBucketSchema = defineEntity({
  name: "JobTypeStartBucket",
  tableName: "job_type_start_bucket",
  properties: {
    namespace: p.text().primary(),
    jobType: p.text().primary(),
    bucketStart: p.datetime().primary(),
    endsAt: p.datetime(),
    starts: p.integer(),
  },
  primaryKeys: ["namespace", "jobType", "bucketStart"],
});

/**
 * Attempt starts of a rate-limited job type within [bucket_start, ends_at), a hundredth of its
 * rate window. Written and pruned only by the limited claim (src/store/sql/task-claim-limited.ts).
 */
export class JobTypeStartBucket extends JobTypeStartBucketSchema.class {}
JobTypeStartBucketSchema.setClass(JobTypeStartBucket);
