/** The Taskwire TypeScript SDK: typed job definitions, a producer client and a worker. */
export { defineJob, isNonRetryableError, NonRetryableError } from "./define-job.js";
export type { Job, JobContext, JobDefaults, JobHandler, JobRef, RateLimitOptions, RetryOptions } from "./define-job.js";
export type { CheckpointData } from "./checkpoint.js";
export { packPayload, PayloadError, payloadTypeName, unpackPayload } from "./payload.js";
export type { PayloadInit, PayloadOf, PayloadSchema } from "./payload.js";
export { createClient, taskOutput, taskSpec } from "./client.js";
export type { ParentAccess, ParentResult } from "./parents.js";
export type { ClientOptions, JobTypeSpec, RawClients, ScheduleOptions, SubmitOptions, TaskFilter, TaskwireClient, WorkerFilter } from "./client.js";
export { isFinishedState, TaskFailedError } from "./task-handle.js";
export type { EventsOptions, TaskHandle, WaitOptions } from "./task-handle.js";
export { createWorker } from "./worker.js";
export { defineInlineJob } from "../inline/define-inline-job.js";
export type { InlineContext, InlineJob } from "../inline/define-inline-job.js";
export type { StopOptions, TaskOutcome, Worker, WorkerEvents, WorkerLogger, WorkerOptions } from "./worker.js";
export type { ConnectionOptions } from "./transport.js";
// Producers compare task states without importing generated code themselves.
export { TaskState } from "../gen/taskwire/v1/task_pb.js";
export { TaskEventKind } from "../gen/taskwire/v1/task_pb.js";
export type { Task, TaskEvent } from "../gen/taskwire/v1/task_pb.js";
export type { ListWorkersResponse, WorkerInfo } from "../gen/taskwire/v1/worker_pb.js";
export { MissedFirePolicy } from "../gen/taskwire/v1/schedule_pb.js";
export type { ListSchedulesResponse, Schedule } from "../gen/taskwire/v1/schedule_pb.js";
