/**
 * The producer's side of Taskwire: register job types, submit tasks with typed inputs, read, cancel
 * and retry them, and list the workers. Errors are the ConnectErrors the server answered with, unwrapped, so callers switch
 * on `error.code` as with any Connect client.
 */
import { create, type DescMessage } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate, type Any } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient as createConnectClient, type CallOptions, type Client } from "@connectrpc/connect";
import { JobTypeService, RateLimitSchema, RetryPolicySchema, type RateLimit, type RegisterJobTypeResponse, type RetryPolicy } from "../gen/taskwire/v1/job_type_pb.js";
import { TaskService, TaskSpecSchema, TaskState, type ListTasksResponse, type Task, type TaskSpec } from "../gen/taskwire/v1/task_pb.js";
import { WorkerService, type ListWorkersResponse } from "../gen/taskwire/v1/worker_pb.js";
import { MissedFirePolicy, ScheduleService, type ListSchedulesResponse, type Schedule } from "../gen/taskwire/v1/schedule_pb.js";
import type { JobRef, RateLimitOptions, RetryOptions } from "./define-job.js";
import { descriptorSetOf } from "./descriptor-set.js";
import { packPayload, payloadTypeName, unpackPayload, type PayloadInit, type PayloadOf, type PayloadSchema } from "./payload.js";
import { isInlineJob } from "../inline/define-inline-job.js";
import { taskHandle, type TaskHandle } from "./task-handle.js";
import { resolveTransport, type ConnectionOptions } from "./transport.js";

/** How to reach the server: `baseUrl` (gRPC over HTTP/2 unless `protocol: "connect"`) or a `transport`. */
export type ClientOptions = ConnectionOptions;

/** A job type described by hand, for callers without a defineJob result (e.g. other languages' types). */
export interface JobTypeSpec {
  name: string;
  /** Fully-qualified input message name; "" or unset: schemaless JSON. */
  inputType?: string;
  /** Fully-qualified output message name; "" or unset: schemaless JSON. */
  outputType?: string;
  defaultPriority?: number;
  defaultMaxAttempts?: number;
  defaultTimeoutMs?: number;
  /** How long a worker holds a task without a heartbeat before it is taken back, 1 s to 1 h (server default 30 s). */
  leaseDurationMs?: number;
  /** How long finished tasks are kept, 1 s to 3650 days, or 0 to keep them forever (server default 7 days). */
  retentionMs?: number;
  /** Backoff between attempts (server default: 1 s base, 10 min cap). */
  defaultRetry?: RetryOptions;
  /** How long a finished task keeps its idempotency key, 1 s to 30 days and at most the retention (server default: none). */
  dedupWindowMs?: number;
  /** At most maxStarts attempts (0 to 1,000,000) start in any interval of windowMs (1 s to 24 h), across all replicas. */
  rateLimit?: RateLimitOptions;
  /** At most this many tasks of the job type run at once, 0 to 100,000 (unset: no limit). */
  maxRunning?: number;
  /** At most this many tasks with the same concurrencyKey run at once, 0 to 100,000 (unset: no limit). */
  maxRunningPerKey?: number;
}

/** Per-task settings; unset ones take the job type's defaults (0 is a value, not "unset"). */
export interface SubmitOptions {
  /** -1000 to 1000; higher runs first. */
  priority?: number;
  /** 1 to 1000. */
  maxAttempts?: number;
  /** Per-attempt timeout, 1 ms to 24 h. */
  timeoutMs?: number;
  /** Not before this time (at most one year ahead). */
  runAt?: Date;
  /** Backoff between attempts; unset fields take the job type's. */
  retry?: RetryOptions;
  /**
   * While a task of this job type holds this key (unfinished, or finished within the job type's
   * dedup window), submit returns that task with `deduplicated` set instead of creating one.
   * 1 to 256 printable characters.
   */
  idempotencyKey?: string;
  /** Use the hash of the input's canonical form as the key (equal JSON values match whatever their key order). */
  dedupByPayload?: boolean;
  /**
   * Tasks this one waits for: existing tasks (a Task or its id) and, in submitGraph, earlier tasks
   * of the same call by position (a number). It starts WAITING, runs once they all SUCCEEDED (its
   * handler gets their outputs as ctx.parents), and ends DEAD if one ends DEAD or CANCELLED. At most
   * 100. With idempotency keys, a position whose task is deduplicated stands for the task holding
   * the key, so a graph whose tasks all carry keys, submitted again, returns the same tasks.
   */
  dependsOn?: readonly (Task | string | number)[];
  /**
   * Groups the task for its job type's limits (e.g. a customer id): at most maxRunningPerKey tasks
   * with one key run at once, and a limited job type's tasks are claimed round-robin across keys.
   * 1 to 128 visible ASCII characters.
   */
  concurrencyKey?: string;
}

/** What a schedule submits at each fire time, and when. */
export interface ScheduleOptions {
  /** Five fields (minute hour day-of-month month day-of-week), or six with seconds first; e.g. "0 3 * * *". */
  cron: string;
  /** IANA time zone the expression is read in (default "UTC"). */
  timeZone?: string;
  /** Fire times missed during downtime: "skip" them (default) or "run_once" for all of them together. */
  missedFires?: "skip" | "run_once";
  /** Create it paused. */
  paused?: boolean;
  /** Task settings, as for submit (resolved when the schedule is created). */
  priority?: number;
  maxAttempts?: number;
  timeoutMs?: number;
  retry?: RetryOptions;
  concurrencyKey?: string;
}

/** ListWorkers options. */
export interface WorkerFilter {
  /** Also list workers that are no longer connected. */
  includeDisconnected?: boolean;
  /** 1 to 1000; unset: 100. */
  pageSize?: number;
  /** A previous response's nextPageToken. */
  pageToken?: string;
}

/** ListTasks filters; every one is optional, and the lists match any of their values. */
export interface TaskFilter {
  jobTypes?: string[];
  states?: TaskState[];
  workerId?: string;
  createdAfter?: Date;
  createdBefore?: Date;
  /** 1 to 1000; unset: 100. */
  pageSize?: number;
  /** A previous response's nextPageToken, with the same filters. */
  pageToken?: string;
}

/** The generated Connect clients, for the RPCs the typed methods do not cover. */
export interface RawClients {
  readonly jobTypes: Client<typeof JobTypeService>;
  readonly tasks: Client<typeof TaskService>;
  readonly workers: Client<typeof WorkerService>;
  readonly schedules: Client<typeof ScheduleService>;
}

/** A Taskwire client. Every method accepts Connect call options last (signal, timeoutMs, headers). */
export interface TaskwireClient {
  /** Creates or updates a job type; from a job definition, its message names and descriptors are sent. */
  registerJobType(target: JobRef | JobTypeSpec, call?: CallOptions): Promise<RegisterJobTypeResponse>;
  /** Submits one task; resolves once it is committed. */
  submit<I extends PayloadSchema, O extends PayloadSchema>(job: JobRef<I, O>, input: PayloadInit<I>, options?: SubmitOptions, call?: CallOptions): Promise<Task>;
  /** Submits up to 1000 tasks of one job type in one transaction (all or none), in order. */
  submitBatch<I extends PayloadSchema, O extends PayloadSchema>(job: JobRef<I, O>, inputs: readonly PayloadInit<I>[], options?: SubmitOptions, call?: CallOptions): Promise<Task[]>;
  /**
   * Submits a small graph of tasks of any job types in one transaction (all or none), in order:
   * build each with taskSpec(job, input, { dependsOn }), where a number names an earlier task of
   * the same call by position (0-based) and a Task or id an existing one. Up to 1000 tasks.
   */
  submitGraph(tasks: readonly TaskSpec[], call?: CallOptions): Promise<Task[]>;
  /** Returns a task with its attempts and, when pending, its queue position. */
  getTask(id: string, call?: CallOptions): Promise<Task>;
  /** Lists tasks, newest first, one page at a time. */
  listTasks(filter?: TaskFilter, call?: CallOptions): Promise<ListTasksResponse>;
  /** Cancels a waiting, pending or running task; returns it as cancelled. */
  cancel(id: string, reason?: string, call?: CallOptions): Promise<Task>;
  /** Re-queues a dead or cancelled task with `additionalAttempts` more (unset: the job type's default_max_attempts); returns it. */
  retry(id: string, additionalAttempts?: number, call?: CallOptions): Promise<Task>;
  /** Lists the namespace's workers (job types, credits, tasks in flight, last heartbeat), one page at a time. */
  listWorkers(filter?: WorkerFilter, call?: CallOptions): Promise<ListWorkersResponse>;
  /** Creates a cron schedule that submits `job` with `input` at each fire time (ALREADY_EXISTS if the name is taken). */
  createSchedule<I extends PayloadSchema, O extends PayloadSchema>(name: string, job: JobRef<I, O>, input: PayloadInit<I>, options: ScheduleOptions, call?: CallOptions): Promise<Schedule>;
  /** Returns one schedule (NOT_FOUND if there is none of that name). */
  getSchedule(name: string, call?: CallOptions): Promise<Schedule>;
  /** Lists the namespace's schedules by name, one page at a time. */
  listSchedules(page?: { pageSize?: number; pageToken?: string }, call?: CallOptions): Promise<ListSchedulesResponse>;
  /** Stops a schedule firing; returns it. */
  pauseSchedule(name: string, call?: CallOptions): Promise<Schedule>;
  /** Lets a paused schedule fire again from its next fire time after now; returns it. */
  resumeSchedule(name: string, call?: CallOptions): Promise<Schedule>;
  /** Deletes a schedule (its tasks stay). */
  deleteSchedule(name: string, call?: CallOptions): Promise<void>;
  /**
   * A handle on a task (or its id): wait({ timeoutMs }), result({ timeoutMs }) and its events. With
   * the job, result() returns the typed output; without, the raw Any.
   */
  handle<O extends PayloadSchema>(task: Task | string, job: JobRef<PayloadSchema, O>): TaskHandle<PayloadOf<O>>;
  handle(task: Task | string): TaskHandle<Any>;
  /** Same as the exported taskOutput(). */
  taskOutput<O extends PayloadSchema>(task: Task, job: JobRef<PayloadSchema, O>): PayloadOf<O> | undefined;
  /** The generated clients on the same transport. */
  readonly raw: RawClients;
  /** Closes the HTTP/2 connection the client opened (nothing when a transport was passed in). */
  close(): void;
}

/** Creates a client. */
export function createClient(options: ClientOptions): TaskwireClient {
  const owned = resolveTransport(options);
  const raw: RawClients = {
    jobTypes: createConnectClient(JobTypeService, owned.transport),
    tasks: createConnectClient(TaskService, owned.transport),
    workers: createConnectClient(WorkerService, owned.transport),
    schedules: createConnectClient(ScheduleService, owned.transport),
  };
  return {
    raw,
    taskOutput,
    close: owned.close,

    // The overloads in TaskwireClient give callers the precise result type.
    handle(task: Task | string, job?: JobRef): TaskHandle<never> {
      const id = typeof task === "string" ? task : task.id;
      return (job === undefined ? taskHandle(raw.tasks, id) : taskHandle(raw.tasks, id, job)) as TaskHandle<never>;
    },

    registerJobType(target, call) {
      return raw.jobTypes.registerJobType(registerRequestOf(target), call);
    },

    async submit(job, input, options = {}, call) {
      const response = await raw.tasks.submit({ task: taskSpecOf(job, input, options) }, call);
      return required(response.task, "Submit");
    },

    async submitBatch(job, inputs, options = {}, call) {
      const tasks = inputs.map((input) => taskSpecOf(job, input, options));
      const response = await raw.tasks.submitBatch({ tasks }, call);
      return response.tasks;
    },

    async submitGraph(tasks, call) {
      return (await raw.tasks.submitBatch({ tasks: [...tasks] }, call)).tasks;
    },

    async getTask(id, call) {
      const response = await raw.tasks.getTask({ id }, call);
      return required(response.task, "GetTask");
    },

    listTasks(filter = {}, call) {
      return raw.tasks.listTasks(
        {
          jobTypes: filter.jobTypes ?? [],
          states: filter.states ?? [],
          workerId: filter.workerId ?? "",
          createdAfter: filter.createdAfter === undefined ? undefined : timestampFromDate(filter.createdAfter),
          createdBefore: filter.createdBefore === undefined ? undefined : timestampFromDate(filter.createdBefore),
          pageSize: filter.pageSize ?? 0,
          pageToken: filter.pageToken ?? "",
        },
        call,
      );
    },

    async cancel(id, reason = "", call) {
      const response = await raw.tasks.cancel({ id, reason }, call);
      return required(response.task, "Cancel");
    },

    async retry(id, additionalAttempts, call) {
      // Unset (not 0) when the caller did not say: only then does the job type's default apply.
      const response = await raw.tasks.retry({ id, additionalAttempts }, call);
      return required(response.task, "Retry");
    },

    async createSchedule(name, job, input, options, call) {
      const { cron, timeZone, missedFires, paused, ...taskOptions } = options;
      const response = await raw.schedules.createSchedule(
        {
          name,
          cron,
          timeZone: timeZone ?? "",
          missedFirePolicy: missedFires === undefined ? MissedFirePolicy.UNSPECIFIED : missedFires === "run_once" ? MissedFirePolicy.RUN_ONCE : MissedFirePolicy.SKIP,
          paused: paused ?? false,
          task: taskSpecOf(job, input, taskOptions),
        },
        call,
      );
      return requiredSchedule(response.schedule, "CreateSchedule");
    },

    async getSchedule(name, call) {
      return requiredSchedule((await raw.schedules.getSchedule({ name }, call)).schedule, "GetSchedule");
    },

    listSchedules(page = {}, call) {
      return raw.schedules.listSchedules({ pageSize: page.pageSize ?? 0, pageToken: page.pageToken ?? "" }, call);
    },

    async pauseSchedule(name, call) {
      return requiredSchedule((await raw.schedules.pauseSchedule({ name }, call)).schedule, "PauseSchedule");
    },

    async resumeSchedule(name, call) {
      return requiredSchedule((await raw.schedules.resumeSchedule({ name }, call)).schedule, "ResumeSchedule");
    },

    async deleteSchedule(name, call) {
      await raw.schedules.deleteSchedule({ name }, call);
    },

    listWorkers(filter = {}, call) {
      return raw.workers.listWorkers(
        { includeDisconnected: filter.includeDisconnected ?? false, pageSize: filter.pageSize ?? 0, pageToken: filter.pageToken ?? "" },
        call,
      );
    },
  };
}

/**
 * The output of a succeeded task, unpacked with the job's output schema; undefined when the job
 * produced none. Throws for a task that has not succeeded, and a PayloadError for a type mismatch.
 */
export function taskOutput<O extends PayloadSchema>(task: Task, job: JobRef<PayloadSchema, O>): PayloadOf<O> | undefined {
  if (task.state !== TaskState.SUCCEEDED) {
    throw new Error(`task ${task.id} is ${TaskState[task.state] ?? task.state}, not SUCCEEDED, so it has no output`);
  }
  return task.output === undefined ? undefined : unpackPayload(job.output, task.output);
}

function registerRequestOf(target: JobRef | JobTypeSpec) {
  if (!isJobRef(target)) {
    return {
      name: target.name,
      inputType: target.inputType ?? "",
      outputType: target.outputType ?? "",
      defaultPriority: target.defaultPriority,
      defaultMaxAttempts: target.defaultMaxAttempts,
      defaultTimeout: optionalDuration(target.defaultTimeoutMs),
      leaseDuration: optionalDuration(target.leaseDurationMs),
      retention: optionalDuration(target.retentionMs),
      defaultRetry: retryPolicyOf(target.defaultRetry),
      dedupWindow: optionalDuration(target.dedupWindowMs),
      rateLimit: rateLimitOf(target.rateLimit),
      maxRunning: target.maxRunning,
      maxRunningPerKey: target.maxRunningPerKey,
    };
  }
  const schemas = [target.input, target.output].filter((s): s is DescMessage => s !== "json");
  const defaults = target.defaults ?? {};
  return {
    name: target.name,
    inputType: payloadTypeName(target.input),
    outputType: payloadTypeName(target.output),
    descriptors: descriptorSetOf(schemas),
    defaultPriority: defaults.priority,
    defaultMaxAttempts: defaults.maxAttempts,
    defaultTimeout: optionalDuration(defaults.timeoutMs),
    leaseDuration: optionalDuration(defaults.leaseDurationMs),
    retention: optionalDuration(defaults.retentionMs),
    inlineModule: isInlineJob(target) ? target.module : "",
    defaultRetry: retryPolicyOf(defaults.defaultRetry),
    dedupWindow: optionalDuration(defaults.dedupWindowMs),
    rateLimit: rateLimitOf(defaults.rateLimit),
    maxRunning: defaults.maxRunning,
    maxRunningPerKey: defaults.maxRunningPerKey,
  };
}

function isJobRef(target: JobRef | JobTypeSpec): target is JobRef {
  return "input" in target && "output" in target;
}

/** One task to submit: `job` with a typed `input` and options (for submitGraph, or the raw clients). */
export function taskSpec<I extends PayloadSchema, O extends PayloadSchema>(job: JobRef<I, O>, input: PayloadInit<I>, options: SubmitOptions = {}): TaskSpec {
  return taskSpecOf(job, input, options);
}

function taskSpecOf<I extends PayloadSchema>(job: JobRef<I, PayloadSchema>, input: PayloadInit<I>, options: SubmitOptions): TaskSpec {
  const dependsOn = options.dependsOn ?? [];
  return create(TaskSpecSchema, {
    jobType: job.name,
    input: packPayload(job.input, input),
    // Unset (not 0) when the caller did not say: the job type's default applies only then.
    priority: options.priority,
    maxAttempts: options.maxAttempts,
    timeout: optionalDuration(options.timeoutMs),
    runAt: options.runAt === undefined ? undefined : timestampFromDate(options.runAt),
    retry: retryPolicyOf(options.retry),
    idempotencyKey: options.idempotencyKey ?? "",
    dedupByPayload: options.dedupByPayload ?? false,
    dependsOn: dependsOn.filter((d): d is Task | string => typeof d !== "number").map((d) => (typeof d === "string" ? d : d.id)),
    dependsOnIndex: dependsOn.filter((d): d is number => typeof d === "number"),
    concurrencyKey: options.concurrencyKey ?? "",
  });
}

/** Unset stays unset (no rate limit); a set one is sent as is (0 is a value: no starts). */
function rateLimitOf(rate: RateLimitOptions | undefined): RateLimit | undefined {
  return rate === undefined ? undefined : create(RateLimitSchema, { maxStarts: rate.maxStarts, window: durationFromMs(rate.windowMs) });
}

function optionalDuration(ms: number | undefined) {
  return ms === undefined ? undefined : durationFromMs(ms);
}

/** Unset fields stay unset (0 is a value: a zero base retries at once), so the server's defaults apply to them. */
function retryPolicyOf(retry: RetryOptions | undefined): RetryPolicy | undefined {
  if (retry === undefined) return undefined;
  return create(RetryPolicySchema, { backoffBase: optionalDuration(retry.backoffBaseMs), backoffCap: optionalDuration(retry.backoffCapMs) });
}

function requiredSchedule(schedule: Schedule | undefined, rpc: string): Schedule {
  if (schedule === undefined) throw new ConnectError(`${rpc} answered without a schedule`, Code.Internal);
  return schedule;
}

function required(task: Task | undefined, rpc: string): Task {
  // The contract always sets it; a server that does not is broken, which Internal says.
  if (task === undefined) throw new ConnectError(`${rpc} answered without a task`, Code.Internal);
  return task;
}
