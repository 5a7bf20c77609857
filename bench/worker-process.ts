/**
 * A benchmark worker process: one SDK worker (gRPC) serving one schemaless job type with a no-op
 * handler. It counts handler starts per input `{i}` (to prove each task ran exactly once), can
 * record when each handler started (W2 latency), and pushes its completion count to the parent.
 */
import { createWorker, defineJob, type Worker } from "../src/sdk/index.js";
import { emit, serve } from "./child.js";
import { now } from "./stats.js";

export interface WorkerStartArgs {
  baseUrl: string;
  apiKey: string;
  jobType: string;
  concurrency: number;
  /** Tasks each worker holds ready beyond its running handlers (the SDK's prefetch). */
  prefetch: number;
  /** Record each handler's start time (W2). */
  recordTimes: boolean;
  /** Push a "progress" event this often while completions change (ms). */
  progressMs: number;
}

export interface WorkerStarted {
  /** Just before worker.start(). */
  startedAt: number;
  /** When the server welcomed the stream. */
  connectedAt: number;
}

export interface WorkerProgress {
  /** Attempts whose completion the server accepted. */
  completed: number;
  /** Attempts that ended otherwise (failed, revoked, released): none should. */
  other: number;
  lastCompletedAt: number;
}

export interface WorkerReport extends WorkerProgress {
  /** Handler starts per input i (a Uint8Array, index = i, capped at 255), base64. */
  starts: string;
  /** First handler start time per input i (a Float64Array, 0: never) when recordTimes, base64. */
  startTimes: string;
  /** Attempts that ended other than "completed", by outcome (failed, revoked, released). */
  otherOutcomes: Record<string, number>;
}

let starts = new Uint8Array(1 << 16);
let startTimes = new Float64Array(0);
let recordTimes = false;
let maxIndex = -1;
let completed = 0;
let lastCompletedAt = 0;
const otherOutcomes: Record<string, number> = {};
let other = 0;
let worker: Worker | undefined;

function grow<T extends Uint8Array | Float64Array>(array: T, index: number, make: (n: number) => T): T {
  if (index < array.length) return array;
  const bigger = make(Math.max(index + 1, array.length * 2));
  bigger.set(array);
  return bigger;
}

function onHandlerStart(i: number): void {
  const at = recordTimes ? now() : 0;
  starts = grow(starts, i, (n) => new Uint8Array(n));
  if (starts[i]! < 255) starts[i]! += 1;
  if (i > maxIndex) maxIndex = i;
  if (recordTimes) {
    startTimes = grow(startTimes, i, (n) => new Float64Array(n));
    if (startTimes[i] === 0) startTimes[i] = at;
  }
}

serve({
  async start(args: WorkerStartArgs): Promise<WorkerStarted> {
    recordTimes = args.recordTimes;
    const job = defineJob({
      name: args.jobType,
      input: "json",
      output: "json",
      handler: async (input) => {
        onHandlerStart((input as { i: number }).i);
      },
    });
    worker = createWorker({ baseUrl: args.baseUrl, apiKey: args.apiKey, jobs: [job], concurrency: args.concurrency, prefetch: args.prefetch });
    worker.on("task:finished", ({ outcome }) => {
      if (outcome === "completed") {
        completed += 1;
        lastCompletedAt = now();
      } else {
        other += 1;
        otherOutcomes[outcome] = (otherOutcomes[outcome] ?? 0) + 1;
      }
    });
    let reported = -1;
    setInterval(() => {
      if (completed + other === reported) return;
      reported = completed + other;
      emit("progress", { completed, other, lastCompletedAt } satisfies WorkerProgress);
    }, args.progressMs).unref();
    const startedAt = now();
    await worker.start();
    return { startedAt, connectedAt: now() };
  },

  report(): WorkerReport {
    return {
      completed,
      other,
      lastCompletedAt,
      otherOutcomes,
      starts: Buffer.from(starts.buffer, 0, maxIndex + 1).toString("base64"),
      startTimes: recordTimes ? Buffer.from(startTimes.buffer, 0, (maxIndex + 1) * 8).toString("base64") : "",
    };
  },

  async stop(): Promise<void> {
    await worker?.stop({ graceMs: 5_000 });
  },
});
