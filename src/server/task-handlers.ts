/** TaskService: validate -> engine -> proto. */
import type { ServiceImpl } from "@connectrpc/connect";
import type { HandlerContext } from "@connectrpc/connect";
import { invalidArgument, TaskwireError } from "../core/errors.js";
import { LIMITS, type ServerLimits } from "../core/limits.js";
import type { EventFilter, NewTask, TaskRecord } from "../core/task.js";
import type { TaskState as DomainState } from "../core/task-state.js";
import type { Engine } from "../engine/engine.js";
import { StreamKeepAliveSchema, TaskSchema, type TaskService, type TaskSpec, type TaskState } from "../gen/taskwire/v1/task_pb.js";
import { ensureJsonRenderable, isJsonRequest } from "./json-rendering.js";
import { eventToProto, stateFromProto, taskToProto } from "./mapping.js";
import { create } from "@bufbuild/protobuf";
import { durationMs, type Duration } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { followEvents } from "../events/status-stream.js";
import { waitForTask } from "../events/wait-for-task.js";
import { taskNotFound } from "../engine/tasks.js";
import { withTransaction } from "../store/orm.js";
import { namespaceEventSeq } from "../store/sql/task-event-read.js";
import { taskSnapshot } from "../store/sql/task-snapshot.js";
import type { PayloadTypes } from "./payloads.js";
import { actorOf, namespaceOf, principalOf } from "./request-context.js";
import type { SubmitLimiter } from "./submit-limiter.js";
import { boundedText, concurrencyKey, dependencyLists, durationMsInRange, idempotencyKey, intInRange, optionalDate, pageSize, requireName, retryPolicy, taskId } from "./validation.js";
import { hasLimits } from "../core/claim-limits.js";

/**
 * Validates one spec and resolves its defaults from the job type ("0 is a value": only unset fields
 * take defaults). `position` is its place in a SubmitBatch (null for Submit and schedules).
 */
export async function newTask(
  engine: Engine,
  payloads: PayloadTypes,
  namespace: string,
  spec: TaskSpec | undefined,
  field: string,
  position: number | null = null,
): Promise<NewTask> {
  if (spec === undefined) throw invalidArgument(field, "is required");
  const jobTypeName = requireName(`${field}.job_type`, spec.jobType);
  const jobType = await engine.jobTypes.find(namespace, jobTypeName);
  if (jobType === undefined) {
    // NOT_FOUND, as for a job type of another namespace (which must look the same).
    throw new TaskwireError("NOT_FOUND", `${field}.job_type: job type ${JSON.stringify(jobTypeName)} is not registered in this namespace; register it first (RegisterJobType)`);
  }
  const input = payloads.check(`${field}.input`, spec.input, jobType.inputType, jobType);
  const runAt = optionalDate(`${field}.run_at`, spec.runAt);
  if (runAt !== null && runAt.getTime() > Date.now() + LIMITS.maxDelayMs) {
    throw invalidArgument(`${field}.run_at`, "is more than a year ahead");
  }
  return {
    namespace,
    jobType: jobTypeName,
    input: input!,
    idempotencyKey: idempotencyKey(field, spec, input!, () => payloads.registryOf(jobType)),
    concurrencyKey: concurrencyKey(`${field}.concurrency_key`, spec.concurrencyKey),
    limited: hasLimits(jobType),
    priority: spec.priority === undefined ? jobType.defaultPriority : intInRange(`${field}.priority`, spec.priority, LIMITS.minPriority, LIMITS.maxPriority),
    maxAttempts: spec.maxAttempts === undefined ? jobType.defaultMaxAttempts : intInRange(`${field}.max_attempts`, spec.maxAttempts, 1, LIMITS.maxAttempts),
    timeoutMs: spec.timeout === undefined ? jobType.defaultTimeoutMs : durationMsInRange(`${field}.timeout`, spec.timeout, LIMITS.minTimeoutMs, LIMITS.maxTimeoutMs),
    runAt,
    ...retryPolicy(`${field}.retry`, spec.retry, jobType),
    ...dependencyLists(field, spec, position),
  };
}

/** A wait of 1 ms to --max-wait-ms, or null when unset. */
function waitDuration(field: string, value: Duration | undefined, limits: ServerLimits): number | null {
  if (value === undefined) return null;
  const ms = durationMs(value);
  if (ms > limits.maxWaitMs) throw invalidArgument(field, `is ${ms} ms; the server allows waits of up to ${limits.maxWaitMs} ms (--max-wait-ms)`);
  return durationMsInRange(field, value, 1, limits.maxWaitMs);
}

/** Bounds what one call asks of dependencies: their total is capped. */
function checkDependencies(tasks: readonly NewTask[]): void {
  const total = tasks.reduce((n, x) => n + (x.dependsOn?.length ?? 0) + (x.dependsOnIndex?.length ?? 0), 0);
  if (total > LIMITS.maxDependenciesPerCall) {
    throw invalidArgument("tasks", `name ${total} dependencies in all; the limit is ${LIMITS.maxDependenciesPerCall} per call`);
  }
}

/** Validates StreamStatus selections: at most a page (--max-page-size) of task ids. */
function eventSelection(req: { taskIds: string[]; jobTypes: string[]; states: TaskState[] }, maxPageSize: number): EventFilter {
  if (req.taskIds.length > maxPageSize) throw invalidArgument("task_ids", `has ${req.taskIds.length} ids; the limit is ${maxPageSize} (the server's --max-page-size)`);
  return {
    taskIds: req.taskIds.map((id, i) => taskId(`task_ids[${i}]`, id)),
    jobTypes: req.jobTypes.map((name, i) => requireName(`job_types[${i}]`, name)),
    states: req.states.map((s, i) => {
      const state = stateFromProto(s);
      if (state === undefined) throw invalidArgument(`states[${i}]`, `${s} is not a task state; use TASK_STATE_WAITING .. TASK_STATE_CANCELLED`);
      return state;
    }),
  };
}

/** The TaskService implementation. */
export function createTaskHandlers(
  engine: Engine,
  payloads: PayloadTypes,
  options: { streamKeepaliveMs: number; limits: ServerLimits; submitLimiter: SubmitLimiter; shutdownSignal: AbortSignal },
): Partial<ServiceImpl<typeof TaskService>> {
  const { limits, submitLimiter } = options;
  // Connect aborts ctx.signal for the server's shutdown as it does for a client that went away or
  // a deadline; only the shutdown is answered (UNAVAILABLE), so that the client resumes.
  const serverShuttingDown = () => options.shutdownSignal.aborted;
  const waitRule = `1 ms to ${limits.maxWaitMs} ms (the server's --max-wait-ms)`;
  const deps = { db: engine.database.db, pool: engine.database.pool, hub: engine.events };

  /**
   * Waits for the task (WaitTask, Submit with wait_timeout). A wait the server's shutdown cut short
   * is UNAVAILABLE (`retry` says how to go on), never a timeout: the client waits again, on another
   * replica or on this one once it is back. A wait the client gave up on (cancel, its deadline)
   * ends as before: the client is not listening for the answer.
   */
  const wait = async (ctx: HandlerContext, namespace: string, id: string, timeoutMs: number, retry: string) => {
    const result = await waitForTask(deps, { namespace, id, timeoutMs, signal: ctx.signal });
    if (result === undefined) throw taskNotFound(id);
    if (result.cutShort && serverShuttingDown()) {
      throw new ConnectError(`the server is shutting down; task ${id} is still ${result.task.state.toUpperCase()}: ${retry}`, Code.Unavailable);
    }
    return { ...result, detail: await engine.tasks.get(namespace, id) };
  };
  /** Checks JSON responses can show every task's payloads. */
  const renderable = (ctx: HandlerContext, tasks: readonly TaskRecord[]) =>
    ensureJsonRenderable(ctx, namespaceOf(ctx), tasks.map((x) => ({ jobType: x.jobType, payloads: [x.input, x.output] })), engine.jobTypes, payloads);

  return {
    async submit(req, ctx: HandlerContext) {
      const namespace = namespaceOf(ctx);
      const task = await newTask(engine, payloads, namespace, req.task, "task");
      const waitMs = waitDuration("wait_timeout", req.waitTimeout, limits);
      checkDependencies([task]);
      // After every check, as in SubmitBatch: a refused call uses no token.
      submitLimiter.take(principalOf(ctx), 1);
      // A new task needs no JSON rendering check (a JSON request's input was decoded with the
      // registry); an existing one a key found may hold any output: checked before the commit.
      const [created] = await engine.tasks.submit([task], () => "task", (duplicates) => renderable(ctx, duplicates));
      if (waitMs === null) return { task: taskToProto(created!) };
      // The task is committed: a timeout is an answer (wait_timed_out), never an error.
      // The task exists: a Submit sent again without an idempotency key would make another one.
      const waited = await wait(ctx, namespace, created!.id, waitMs, "it was submitted; wait for it with WaitTask (do not submit it again)");
      await renderable(ctx, [waited.detail]);
      return { task: taskToProto({ ...waited.detail, deduplicated: created!.deduplicated }), waitTimedOut: waited.timedOut };
    },

    async waitTask(req, ctx) {
      const namespace = namespaceOf(ctx);
      const id = taskId("id", req.id);
      if (req.timeout === undefined) throw invalidArgument("timeout", `is required: how long to wait, ${waitRule}`);
      const timeoutMs = waitDuration("timeout", req.timeout, limits)!;
      const waited = await wait(ctx, namespace, id, timeoutMs, "retry the wait (WaitTask)");
      if (waited.timedOut) {
        throw new ConnectError(
          `task ${id} is still ${waited.task.state.toUpperCase()} after ${timeoutMs} ms`,
          Code.DeadlineExceeded,
          undefined,
          [{ desc: TaskSchema, value: taskToProto(waited.detail) }],
        );
      }
      await renderable(ctx, [waited.detail]);
      return { task: taskToProto(waited.detail) };
    },

    async *streamStatus(req, ctx) {
      const namespace = namespaceOf(ctx);
      const filter = eventSelection(req, limits.maxPageSize);
      let position: bigint;
      if (req.since !== undefined) {
        const latest = await namespaceEventSeq(deps.db, namespace);
        if (req.since < 0n || req.since > latest) {
          throw invalidArgument("since", `is ${req.since}; allowed: 0 to ${latest}, the namespace's latest event (pass a cursor this server sent)`);
        }
        position = req.since;
      } else {
        // At most a page of tasks, as a list RPC would answer.
        const snapshot = await taskSnapshot(deps.db, namespace, filter, limits.maxPageSize);
        await renderable(ctx, snapshot.tasks);
        position = snapshot.seq;
        for (const task of snapshot.tasks) yield { message: { case: "snapshot", value: taskToProto(task) }, cursor: snapshot.seq };
      }
      const watcher = engine.events.subscribe(namespace, filter, position);
      for await (const item of followEvents(deps.db, engine.events, watcher, { keepaliveMs: options.streamKeepaliveMs, signal: ctx.signal })) {
        if (item.kind === "event") yield { message: { case: "event", value: eventToProto(item.event) }, cursor: item.cursor };
        else if (item.kind === "keepalive") yield { message: { case: "keepalive", value: create(StreamKeepAliveSchema) }, cursor: item.cursor };
      }
      // followEvents returns once ctx.signal aborts. For the server's shutdown the client must hear
      // it, or a normal end of stream looks like "nothing more will come"; for a client that went
      // away (or its deadline) nothing is answered.
      if (serverShuttingDown()) {
        throw new ConnectError("the server is shutting down; reconnect to go on (StreamStatus: with since = the last cursor received)", Code.Unavailable);
      }
    },

    async submitBatch(req, ctx) {
      if (req.tasks.length === 0) throw invalidArgument("tasks", `is empty; send 1 to ${LIMITS.maxBatch} tasks`);
      if (req.tasks.length > LIMITS.maxBatch) {
        throw invalidArgument("tasks", `has ${req.tasks.length} tasks; the limit is ${LIMITS.maxBatch} per call`);
      }
      const namespace = namespaceOf(ctx);
      const tasks: NewTask[] = [];
      for (const [i, spec] of req.tasks.entries()) tasks.push(await newTask(engine, payloads, namespace, spec, `tasks[${i}]`, i));
      checkDependencies(tasks);
      submitLimiter.take(principalOf(ctx), tasks.length);
      const created = await engine.tasks.submit(tasks, (i) => `tasks[${i}]`, (duplicates) => renderable(ctx, duplicates));
      return { tasks: created.map(taskToProto) };
    },

    async getTask(req, ctx) {
      const task = await engine.tasks.get(namespaceOf(ctx), taskId("id", req.id));
      await renderable(ctx, [task]);
      return { task: taskToProto(task) };
    },

    async listTasks(req, ctx) {
      const states: DomainState[] = req.states.map((s, i) => {
        const state = stateFromProto(s);
        if (state === undefined) throw invalidArgument(`states[${i}]`, `${s} is not a task state; use TASK_STATE_WAITING .. TASK_STATE_CANCELLED`);
        return state;
      });
      const filter = {
        namespace: namespaceOf(ctx),
        jobTypes: req.jobTypes.map((name, i) => requireName(`job_types[${i}]`, name)),
        states,
        workerId: req.workerId === "" ? null : requireName("worker_id", req.workerId),
        createdAfter: optionalDate("created_after", req.createdAfter),
        createdBefore: optionalDate("created_before", req.createdBefore),
      };
      const page = await engine.tasks.list(filter, pageSize("page_size", req.pageSize, limits), req.pageToken);
      await renderable(ctx, page.tasks);
      return { tasks: page.tasks.map(taskToProto), nextPageToken: page.nextPageToken, totalCount: BigInt(page.total) };
    },

    async cancel(req, ctx) {
      const id = taskId("id", req.id);
      const reason = boundedText("reason", req.reason, LIMITS.maxReasonChars);
      // Checked before cancelling, so that a JSON caller never gets an error for a cancel that happened.
      if (isJsonRequest(ctx)) await renderable(ctx, [await engine.tasks.get(namespaceOf(ctx), id)]);
      const task = await engine.tasks.cancel(namespaceOf(ctx), id, reason, actorOf(ctx));
      return { task: taskToProto(task) };
    },

    async retry(req, ctx) {
      const namespace = namespaceOf(ctx);
      const id = taskId("id", req.id);
      let additional = req.additionalAttempts;
      if (additional === undefined) {
        const current = await engine.tasks.get(namespace, id);
        additional = (await engine.jobTypes.get(namespace, current.jobType)).defaultMaxAttempts;
      } else {
        additional = intInRange("additional_attempts", additional, 1, LIMITS.maxAttempts);
      }
      if (isJsonRequest(ctx)) await renderable(ctx, [await engine.tasks.get(namespace, id)]);
      return { task: taskToProto(await engine.tasks.retry(namespace, id, additional, actorOf(ctx))) };
    },
  };
}

