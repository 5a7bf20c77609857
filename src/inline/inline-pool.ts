/**
 * The server's thread pool for inline job types (Piscina). Payload bytes go to the thread in the
 * transfer list and the output comes back the same way, so large buffers are moved, never copied.
 * Stopping an attempt (timeout, cancel, shutdown) aborts its Piscina task, which terminates the
 * thread running it; Piscina starts a fresh one.
 */
import { existsSync, realpathSync, statSync } from "node:fs";
import { availableParallelism } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Piscina } from "piscina";
import type { ParentOutput, Payload } from "../core/task.js";
import type { ThreadOutput, ThreadTask } from "./thread.js";

/** Pool settings. */
export interface InlinePoolOptions {
  /** The folder inline modules live in. */
  dir: string;
  /** Threads kept when idle, and the most that run at once (default: the machine's cores). */
  minThreads?: number;
  maxThreads?: number;
  /** An idle thread above minThreads ends after this long (ms). */
  idleTimeoutMs?: number;
  /** Attempts that may wait for a thread; beyond threads + queue the server stops claiming. */
  maxQueue?: number;
  /** Old-generation heap limit of each thread (MiB); a handler exceeding it fails its attempt only. */
  memoryMb?: number;
  /** Told about a thread that failed outside any task. */
  onThreadError?: (error: unknown) => void;
}

const MODULE_NAME = /^(?!\/)(?!.*(?:^|\/)\.\.(?:\/|$))[A-Za-z0-9._/-]+\.(?:ts|mts|js|mjs)$/;

// The thread entry next to this file: thread.ts when running from source, thread.js when compiled.
const FROM_SOURCE = import.meta.url.endsWith(".ts");
const THREAD_FILE = fileURLToPath(new URL(FROM_SOURCE ? "./thread.ts" : "./thread.js", import.meta.url));

/** Process flags a thread takes over: module loading. V8 heap flags (e.g. --max-semi-space-size) are process-wide, and Worker refuses them. */
const THREAD_FLAGS = /^--(import|require|loader|experimental-loader|conditions|enable-source-maps|no-warnings)(=|$)/;
/** The flags above that take their value as the next argument. */
const FLAGS_WITH_VALUE = new Set(["--import", "--require", "--loader", "--experimental-loader", "--conditions"]);

/**
 * Threads load modules the way the process does; they always need tsx as well (inline modules
 * may be TypeScript even when the server runs compiled, or registered tsx in code).
 */
export function threadExecArgv(execArgv: readonly string[] = process.execArgv): string[] {
  const kept: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const arg = execArgv[i]!;
    if (!THREAD_FLAGS.test(arg)) continue;
    kept.push(arg);
    if (FLAGS_WITH_VALUE.has(arg) && i + 1 < execArgv.length) kept.push(execArgv[++i]!);
  }
  const hasTsx = kept.some((arg, i, all) => /(^|=)tsx(\/esm)?$/.test(arg) || (arg === "--import" && /^tsx(\/esm)?$/.test(all[i + 1] ?? "")));
  return hasTsx ? kept : [...kept, "--import", "tsx"];
}

/** A buffer whose whole ArrayBuffer it owns, so transferring it detaches nothing else (small Buffers share a pool slab). */
function ownedBytes(value: Uint8Array): Uint8Array<ArrayBuffer> {
  const owns = value.buffer instanceof ArrayBuffer && value.byteOffset === 0 && value.byteLength === value.buffer.byteLength;
  // new Uint8Array(view) copies; Buffer#slice would share (and a pooled slab cannot be transferred at all).
  return owns ? (value as Uint8Array<ArrayBuffer>) : new Uint8Array(value);
}

/** The pool took no more attempts (every thread busy, the queue full): the attempt never started. */
export class PoolFullError extends Error {
  constructor() {
    super("the inline pool is full");
    this.name = "PoolFullError";
  }
}

// Piscina's own rejections of a task it has no room for (errors.js: NoTaskQueueAvailable, TaskQueueAtLimit).
const PISCINA_FULL = new Set(["No task queue available and all Workers are busy", "Task queue is at limit"]);
function isPoolFull(error: unknown): boolean {
  // Matched by message: Piscina exports no error classes (a handler throwing these very words would match too).
  return error instanceof Error && PISCINA_FULL.has(error.message);
}

export class InlinePool {
  /** Created at the first attempt: a server with no inline job types starts no thread. */
  private piscina: Piscina<ThreadTask, ThreadOutput> | undefined;
  private readonly createPiscina: () => Piscina<ThreadTask, ThreadOutput>;
  private readonly dir: string;
  /** Attempts the pool takes at once: threads plus queue. The runner claims no more than this. */
  readonly capacity: number;

  constructor(options: InlinePoolOptions) {
    this.dir = path.resolve(options.dir);
    const maxThreads = options.maxThreads ?? availableParallelism();
    const maxQueue = options.maxQueue ?? maxThreads;
    this.capacity = maxThreads + maxQueue;
    this.createPiscina = () => {
      const piscina = new Piscina<ThreadTask, ThreadOutput>({
        filename: THREAD_FILE,
        minThreads: Math.min(options.minThreads ?? 1, maxThreads),
        maxThreads,
        idleTimeout: options.idleTimeoutMs ?? 30_000,
        maxQueue,
        resourceLimits: { maxOldGenerationSizeMb: options.memoryMb ?? 512 },
        execArgv: threadExecArgv(),
      });
      // A thread that fails outside a task (e.g. cannot start) must not take the server down.
      piscina.on("error", (error: unknown) => options.onThreadError?.(error));
      return piscina;
    };
  }

  /** Why `name` cannot be an inline module here, or null when it can. */
  moduleProblem(name: string): string | null {
    if (!MODULE_NAME.test(name)) {
      return `${JSON.stringify(name.slice(0, 200))} is not a module path: use a relative path of letters, digits, '.', '_', '-' and '/' ending in .ts, .mts, .js or .mjs, without ".."`;
    }
    const file = path.join(this.dir, name);
    if (!existsSync(file) || !statSync(file).isFile() || !realpathSync(file).startsWith(realpathSync(this.dir) + path.sep)) {
      return `${JSON.stringify(name)} is not a file in the server's inline folder (${this.dir})`;
    }
    return null;
  }

  /**
   * Runs one attempt on a thread; resolves with its output (null for none). The input's buffer is
   * transferred: after this call it is detached in this thread. Aborting `signal` stops the thread.
   */
  async run(params: {
    module: string;
    jobType: string;
    taskId: string;
    attempt: number;
    input: Payload;
    parents?: readonly ParentOutput[];
    signal: AbortSignal;
  }): Promise<Payload | null> {
    const value = ownedBytes(params.input.value);
    const task: ThreadTask = {
      file: path.join(this.dir, params.module),
      jobType: params.jobType,
      taskId: params.taskId,
      attempt: params.attempt,
      typeUrl: params.input.typeUrl,
      value,
      // Copied (structured clone), each into bytes of its own: a clone of a pooled Buffer would carry its whole pool.
      parents: (params.parents ?? []).map((p) => ({
        taskId: p.taskId,
        jobType: p.jobType,
        output: p.output === null ? null : { typeUrl: p.output.typeUrl, value: new Uint8Array(p.output.value) },
      })),
    };
    this.piscina ??= this.createPiscina();
    try {
      return await this.piscina.run(task, { transferList: [value.buffer], signal: params.signal });
    } catch (error) {
      throw isPoolFull(error) ? new PoolFullError() : error;
    }
  }

  /** Threads now, attempts waiting, and how busy the pool has been (for metrics and tests). */
  get stats(): { threads: number; queued: number; utilization: number } {
    const p = this.piscina;
    return p === undefined ? { threads: 0, queued: 0, utilization: 0 } : { threads: p.threads.length, queued: p.queueSize, utilization: p.utilization };
  }

  /** Stops every thread (running attempts must have been stopped or finished first). */
  async close(): Promise<void> {
    await this.piscina?.destroy();
  }
}
