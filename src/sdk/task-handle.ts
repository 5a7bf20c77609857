/**
 * A handle on one task: wait for it (WaitTask, for as long as the caller says, in calls of at most
 * the server's 5-minute limit), take its typed result, and follow its events (StreamStatus),
 * resuming from the last cursor when the stream breaks.
 */
import { durationFromMs, type Any } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type CallOptions, type Client } from "@connectrpc/connect";
import { TaskService, TaskState, type Task, type TaskEvent } from "../gen/taskwire/v1/task_pb.js";
import type { JobRef } from "./define-job.js";
import { unpackPayload, type PayloadOf, type PayloadSchema } from "./payload.js";

/** The longest wait one WaitTask call may ask for (the server's limit). */
const MAX_WAIT_PER_CALL_MS = 5 * 60 * 1_000;

/** Stream reconnects in a row before events() gives up (the delay doubles from 100 ms to 2 s). */
const MAX_STREAM_RETRIES = 5;

/** The delay before the nth attempt in a row to reach the server again: doubling from 100 ms to 2 s. */
const retryDelayMs = (failures: number) => Math.min(2_000, 100 * 2 ** (failures - 1));

const FINISHED = new Set([TaskState.SUCCEEDED, TaskState.DEAD, TaskState.CANCELLED]);

/** True for SUCCEEDED, DEAD and CANCELLED. */
export function isFinishedState(state: TaskState): boolean {
  return FINISHED.has(state);
}

/** result() of a task that ended DEAD or CANCELLED; `task` is the finished task. */
export class TaskFailedError extends Error {
  constructor(readonly task: Task) {
    super(`task ${task.id} ended ${TaskState[task.state]}${task.lastError === "" ? "" : `: ${task.lastError}`}`);
    this.name = "TaskFailedError";
  }
}

/** How long to wait, in milliseconds (required: waits are always bounded). */
export interface WaitOptions {
  timeoutMs: number;
}

/** Where events() starts. */
export interface EventsOptions {
  /** Only events after this cursor (a TaskEvent's sequence); unset: from the task's creation. */
  since?: bigint;
  /** Stops the iteration. */
  signal?: AbortSignal;
}

/** One task, by id; `R` is what result() resolves to (the typed output given a job, else the raw Any). */
export interface TaskHandle<R = Any> {
  readonly id: string;
  /** The task as it is now. */
  get(call?: CallOptions): Promise<Task>;
  /**
   * Resolves with the task once it has finished (in any end state). Rejects with a ConnectError
   * DEADLINE_EXCEEDED if it is still unfinished after `timeoutMs`. Waits on across a server that
   * is shutting down or out of reach (UNAVAILABLE), within `timeoutMs`.
   */
  wait(options: WaitOptions, call?: CallOptions): Promise<Task>;
  /**
   * Waits like wait(), then returns the output of a SUCCEEDED task, unpacked with the job's output
   * schema when the handle has one (undefined when the job returned none). Rejects with TaskFailedError when it ended DEAD
   * or CANCELLED.
   */
  result(options: WaitOptions, call?: CallOptions): Promise<R | undefined>;
  /**
   * The task's events from its creation (or after `since`), oldest first, then live ones, ending
   * with the event of the state it finished in: an end state that a Retry later undid does not end
   * the iteration; given a `since` after a finished task's last event, it ends at the stream's first
   * keep-alive. Reconnects from the last event after a broken stream, or one that ended before the
   * task finished (a server shutting down), up to 5 times in a row.
   */
  events(options?: EventsOptions): AsyncIterable<TaskEvent>;
  /** Same as events(). */
  [Symbol.asyncIterator](): AsyncIterator<TaskEvent>;
}

/** Makes a handle; the client's handle() calls this with its TaskService client. */
export function taskHandle(tasks: Client<typeof TaskService>, id: string): TaskHandle<Any>;
export function taskHandle<O extends PayloadSchema>(tasks: Client<typeof TaskService>, id: string, job: JobRef<PayloadSchema, O>): TaskHandle<PayloadOf<O>>;
export function taskHandle(tasks: Client<typeof TaskService>, id: string, job?: JobRef): TaskHandle<unknown> {
  async function wait(options: WaitOptions, call?: CallOptions): Promise<Task> {
    if (!Number.isFinite(options.timeoutMs) || options.timeoutMs < 1) {
      throw new RangeError(`timeoutMs is ${options.timeoutMs}; give a wait of at least 1 ms`);
    }
    const deadline = Date.now() + options.timeoutMs;
    let perCallMs = MAX_WAIT_PER_CALL_MS;
    let unavailable = 0;
    for (;;) {
      const remaining = Math.max(1, deadline - Date.now());
      try {
        const { task } = await tasks.waitTask({ id, timeout: durationFromMs(Math.min(remaining, perCallMs)) }, call);
        if (task === undefined) throw new ConnectError("WaitTask answered without a task", Code.Internal);
        return task;
      } catch (error) {
        // A server configured with a shorter --max-wait-ms says its limit: wait in calls of that length.
        const serverMax = error instanceof ConnectError && error.code === Code.InvalidArgument ? /allows waits of up to (\d+) ms/.exec(error.rawMessage)?.[1] : undefined;
        if (serverMax !== undefined && Number(serverMax) < perCallMs && Number(serverMax) >= 1) {
          perCallMs = Number(serverMax);
          continue;
        }
        // The server is shutting down or out of reach (a rolling restart, its database down): wait
        // again, on this replica once it is back or on another, until our own deadline.
        const transient = error instanceof ConnectError && error.code === Code.Unavailable && call?.signal?.aborted !== true;
        if (transient && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, Math.min(retryDelayMs(++unavailable), Math.max(0, deadline - Date.now()))));
          continue;
        }
        // The server's per-call limit passed before ours: ask again for the rest.
        const timedOut = error instanceof ConnectError && error.code === Code.DeadlineExceeded;
        if (!timedOut || Date.now() >= deadline) throw error;
      }
    }
  }

  async function get(call?: CallOptions): Promise<Task> {
    const { task } = await tasks.getTask({ id }, call);
    if (task === undefined) throw new ConnectError("GetTask answered without a task", Code.Internal);
    return task;
  }

  /** True when the task is still in the end state the event reports (no Retry since). */
  async function isLast(event: TaskEvent, signal: AbortSignal | undefined): Promise<boolean> {
    const now = await get({ signal });
    return now.state === event.state && now.attempt === event.attempt;
  }

  async function* events(options: EventsOptions = {}): AsyncGenerator<TaskEvent> {
    // Replayed through the (task_id, seq) index: a task's history costs what the task has, not the namespace.
    let since = options.since ?? 0n;
    let failures = 0;
    for (;;) {
      try {
        for await (const message of tasks.streamStatus({ taskIds: [id], since }, { signal: options.signal })) {
          failures = 0;
          since = message.cursor;
          // Idle: if the task has finished, its last event was before `since`; nothing more will come.
          if (message.message.case === "keepalive" && isFinishedState((await get({ signal: options.signal })).state)) return;
          if (message.message.case !== "event") continue;
          const event = message.message.value;
          yield event;
          if (isFinishedState(event.state) && (await isLast(event, options.signal))) return;
        }
        // The stream ended, without error, before the task finished (a server that closes its
        // streams on shutdown without saying so): a break like any other, resumed from the cursor.
        throw new ConnectError(`the stream of task ${id}'s events ended before the task finished`, Code.Unavailable);
      } catch (error) {
        if (options.signal?.aborted) return;
        // A broken connection surfaces as UNAVAILABLE, or as CANCELED (HTTP/2 RST_STREAM) that we did not ask for.
        const transient = error instanceof ConnectError && (error.code === Code.Unavailable || error.code === Code.Canceled);
        if (!transient || ++failures > MAX_STREAM_RETRIES) throw error;
        await new Promise((resolve) => setTimeout(resolve, retryDelayMs(failures)));
      }
    }
  }

  return {
    id,
    get,
    wait,
    async result(options, call) {
      const task = await wait(options, call);
      if (task.state !== TaskState.SUCCEEDED) throw new TaskFailedError(task);
      if (task.output === undefined) return undefined;
      return job === undefined ? task.output : unpackPayload(job.output, task.output);
    },
    events,
    [Symbol.asyncIterator]: () => events()[Symbol.asyncIterator](),
  };
}
