/**
 * A benchmark producer process: one SDK client (gRPC) submitting tasks `{i}` of one schemaless job
 * type, either in batches (SubmitBatch) or one by one on a fixed schedule (Submit).
 */
import { createClient, defineJob, type TaskwireClient } from "../src/sdk/index.js";
import { serve } from "./child.js";
import { now } from "./stats.js";

export interface ConnectArgs {
  baseUrl: string;
  apiKey: string;
  jobType: string;
}

export interface BatchesArgs {
  /** Inputs i = first .. first + n - 1. */
  first: number;
  n: number;
  batchSize: number;
  /** SubmitBatch calls in flight at once. */
  inflight: number;
}

export interface BatchesResult {
  /** Just before the first call. */
  startedAt: number;
  /** When the last call was answered. */
  endedAt: number;
}

export interface PacedArgs {
  first: number;
  n: number;
  intervalMs: number;
}

export interface PacedResult {
  /** Per task, in order: just before its Submit call. */
  submitAt: number[];
  /** Per task: when its Submit was answered. */
  ackAt: number[];
}

let client: TaskwireClient | undefined;
let job = defineJob({ name: "unset", input: "json", output: "json", handler: async () => undefined });

function connected(): TaskwireClient {
  if (client === undefined) throw new Error("connect first");
  return client;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

serve({
  /** Opens the client and registers the job type (a worker may only claim registered ones). */
  async connect(args: ConnectArgs): Promise<void> {
    client = createClient({ baseUrl: args.baseUrl, apiKey: args.apiKey });
    job = defineJob({ name: args.jobType, input: "json", output: "json", handler: async () => undefined });
    await client.registerJobType(job);
  },

  /** SubmitBatch calls of batchSize tasks, `inflight` at a time, until n are submitted. */
  async batches(args: BatchesArgs): Promise<BatchesResult> {
    const c = connected();
    let next = args.first;
    const end = args.first + args.n;
    const lane = async () => {
      while (next < end) {
        const from = next;
        const to = Math.min(end, from + args.batchSize);
        next = to;
        const inputs = [];
        for (let i = from; i < to; i++) inputs.push({ i });
        const tasks = await c.submitBatch(job, inputs);
        if (tasks.length !== to - from) throw new Error(`SubmitBatch returned ${tasks.length} tasks for ${to - from}`);
      }
    };
    const startedAt = now();
    await Promise.all(Array.from({ length: Math.max(1, args.inflight) }, lane));
    return { startedAt, endedAt: now() };
  },

  /** One Submit every intervalMs (open loop: calls do not wait for each other). */
  async paced(args: PacedArgs): Promise<PacedResult> {
    const c = connected();
    const submitAt: number[] = [];
    const ackAt: number[] = [];
    const calls: Promise<void>[] = [];
    const t0 = now();
    for (let k = 0; k < args.n; k++) {
      const due = t0 + k * args.intervalMs;
      // Timers fire up to ~1 ms late; no busy-wait, which would steal a core from the server on a
      // 2-core machine. Latency is measured from the actual call, so lateness only shifts the schedule.
      const wait = due - now();
      if (wait > 0) await sleep(wait);
      const at = now();
      submitAt.push(at);
      calls.push(
        c.submit(job, { i: args.first + k }).then(() => {
          ackAt[k] = now();
        }),
      );
    }
    await Promise.all(calls);
    return { submitAt, ackAt };
  },

  close(): void {
    client?.close();
    client = undefined;
  },
});
