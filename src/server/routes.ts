/** Every RPC registration in one place. */
import type { ConnectRouter } from "@connectrpc/connect";
import type { Logger } from "pino";
import type { ServerLimits } from "../core/limits.js";
import type { Engine } from "../engine/engine.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { AdminService } from "../gen/taskwire/v1/admin_pb.js";
import { JobTypeService } from "../gen/taskwire/v1/job_type_pb.js";
import { TaskService } from "../gen/taskwire/v1/task_pb.js";
import { WorkerService } from "../gen/taskwire/v1/worker_pb.js";
import { createAdminHandlers } from "./admin-handlers.js";
import { ScheduleService } from "../gen/taskwire/v1/schedule_pb.js";
import { createScheduleHandlers } from "./schedule-handlers.js";
import { createHealthHandlers } from "./health.js";
import { createJobTypeHandlers } from "./job-type-handlers.js";
import type { PayloadTypes } from "./payloads.js";
import type { SubmitLimiter } from "./submit-limiter.js";
import { createTaskHandlers } from "./task-handlers.js";
import { createWorkerHandlers } from "./worker-handlers.js";

/** The services a server registers (the role table in src/core/roles.ts lists each of their methods). */
export const SERVICES = [JobTypeService, TaskService, WorkerService, ScheduleService, AdminService, Health] as const;

/** Registers Taskwire's services and the standard health service. */
export function createRoutes(
  engine: Engine,
  payloads: PayloadTypes,
  probe: () => Promise<boolean>,
  logger: Logger,
  options: { streamKeepaliveMs: number; limits: ServerLimits; submitLimiter: SubmitLimiter; shutdownSignal: AbortSignal },
) {
  return (router: ConnectRouter) => {
    router.service(JobTypeService, createJobTypeHandlers(engine, payloads, options.limits));
    router.service(TaskService, createTaskHandlers(engine, payloads, options));
    router.service(WorkerService, createWorkerHandlers(engine, payloads, logger, options.limits));
    router.service(ScheduleService, createScheduleHandlers(engine, payloads, options.limits));
    router.service(AdminService, createAdminHandlers(engine.database, engine.auth, options.limits));
    router.service(Health, createHealthHandlers(probe));
  };
}
