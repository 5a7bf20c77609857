/** Every entity, for MikroORM's configuration. */
import { ApiKey } from "./api-key.js";
import { AuditEvent } from "./audit-event.js";
import { JobType } from "./job-type.js";
import { JobTypeLimiter } from "./job-type-limiter.js";
import { JobTypeStartBucket } from "./job-type-start-bucket.js";
import { Namespace } from "./namespace.js";
import { Schedule } from "./schedule.js";
import { Task } from "./task.js";
import { TaskAttempt } from "./task-attempt.js";
import { TaskDependency } from "./task-dependency.js";
import { TaskEvent } from "./task-event.js";
import { Worker } from "./worker.js";

export { ApiKey, AuditEvent, JobType, JobTypeLimiter, JobTypeStartBucket, Namespace, Schedule, Task, TaskAttempt, TaskDependency, TaskEvent, Worker };
export const ENTITIES = [Namespace, ApiKey, AuditEvent, JobType, Task, TaskAttempt, TaskDependency, TaskEvent, Worker, Schedule, JobTypeLimiter, JobTypeStartBucket];
