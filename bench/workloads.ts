/**
 * The workloads of issue #6. Each run starts its own server process, producer and workers (see
 * session.ts), measures, checks that every task ran exactly once and none is left, and returns a
 * flat record of figures.
 */
import { randomBytes } from "node:crypto";
import { appendFile } from "node:fs/promises";
import { verifyTasks } from "./database.js";
import type { BatchesResult, PacedResult } from "./producer-process.js";
import { DeadlineError, Session, type SessionOptions, type Usage } from "./session.js";
import { median, percentile, round } from "./stats.js";
import type { WorkerReport } from "./worker-process.js";

/** Workload parameters (the values are the defaults in run.ts). */
export interface Params {
  /** Tasks for W1 and W3. */
  n: number;
  /** Handlers per worker process. */
  concurrency: number;
  /** Tasks each worker holds ready beyond its running handlers. */
  prefetch: number;
  /** Worker processes for W1x4. */
  workers: number;
  /** W1's submit: tasks per SubmitBatch and calls in flight. */
  submitBatch: number;
  submitInflight: number;
  /** W2. */
  latencyTasks: number;
  latencyWarmup: number;
  latencyIntervalMs: number;
  /** W2: where to append each run's per-task latencies, if anywhere. */
  latenciesOut?: string;
  /** W3's producer: tasks per SubmitBatch and calls in flight. */
  mixedBatch: number;
  mixedInflight: number;
  /** w3loop: how long to loop, s. */
  loopSeconds: number;
  /** rss100k: pending tasks. */
  rssTasks: number;
}

/** One run's figures. Numbers (and objects of numbers) are medianed across runs. */
export type RunResult = Record<string, unknown>;

/** A target from the issue, checked against the median. */
export interface Target {
  metric: string;
  value: number;
  target: string;
  pass: boolean;
}

export interface Workload {
  description: string;
  /** Runs in the default `npm run bench`. */
  default: boolean;
  /** The run's own time limit on top of --timeout (long loops). */
  extraDeadlineMs?(p: Params): number;
  run(label: string, options: SessionOptions, p: Params): Promise<RunResult>;
  targets(median: RunResult): Target[];
}

const tag = () => randomBytes(4).toString("hex");

/** Opens a session, runs `fn`, and always closes it (killing everything first if the deadline passed). */
async function withSession<T>(label: string, options: SessionOptions, workers: number, fn: (s: Session) => Promise<T>): Promise<T> {
  const session = await Session.open(label, options, workers);
  try {
    return await fn(session);
  } catch (error) {
    if (error instanceof DeadlineError) session.killAll();
    throw error;
  } finally {
    await session.close();
  }
}

/** Sums the workers' handler starts per input over [first, first + n): exactly once each? */
export function exactlyOnce(reports: readonly WorkerReport[], first: number, n: number): { duplicates: number; missing: number } {
  const total = new Uint16Array(n);
  for (const r of reports) {
    const starts = Buffer.from(r.starts, "base64");
    for (let i = first; i < Math.min(starts.length, first + n); i++) total[i - first]! += starts[i]!;
  }
  let duplicates = 0;
  let missing = 0;
  for (const count of total) {
    if (count === 0) missing += 1;
    else if (count > 1) duplicates += 1;
  }
  return { duplicates, missing };
}

/**
 * Fails the run loudly unless every task's handler ran exactly once and the database agrees (all
 * SUCCEEDED on attempt 1, one attempt row each, nothing else left). Returns the attempts the worker
 * SDK saw end other than "completed" although the task succeeded (an SDK/server bug, not a lost
 * task): the run keeps its figures, and the count is reported and warned about.
 */
async function verify(session: Session, jobType: string, reports: readonly WorkerReport[], n: number): Promise<Record<string, number>> {
  const once = exactlyOnce(reports, 0, n);
  const db = await session.within(verifyTasks(session.server.databaseUrl, jobType, n), "verifying the database");
  const problems: string[] = [];
  if (once.duplicates > 0) problems.push(`${once.duplicates} tasks ran more than once`);
  if (once.missing > 0) problems.push(`${once.missing} tasks never ran`);
  if (!db.ok) problems.push(`database: ${db.problem}`);
  if (problems.length > 0) throw new Error(`verification failed: ${problems.join("; ")}`);
  const other: Record<string, number> = {};
  for (const r of reports) for (const [k, v] of Object.entries(r.otherOutcomes)) other[k] = (other[k] ?? 0) + v;
  if (Object.keys(other).length > 0) {
    process.stderr.write(`  warning: every task succeeded once, but the worker saw attempts end as ${JSON.stringify(other)} (a misreported outcome)\n`);
  }
  return other;
}

const count = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);
const perSecond = (n: number, fromMs: number, toMs: number) => round((n * 1000) / (toMs - fromMs), 0);
/** CPU µs per task of each process group over a window: the cost that has to shrink for the targets. */
const cpuPerTask = (u: Usage, n: number) => ({
  server: round((u.serverCpuSeconds * 1e6) / n, 0),
  db: round((u.dbCpuSeconds * 1e6) / n, 0),
  workers: round((u.workersCpuSeconds * 1e6) / n, 0),
  producer: round((u.producerCpuSeconds * 1e6) / n, 0),
});

/** W1: submit n tasks with SubmitBatch, then start the worker(s) and time the burn-down. */
async function burnDown(label: string, options: SessionOptions, p: Params, n: number, workers: number): Promise<RunResult> {
  const jobType = `bench.w1.${tag()}`;
  return withSession(label, options, workers, async (s) => {
    await s.within(s.producer.call("connect", { baseUrl: s.server.baseUrl, apiKey: s.server.apiKey, jobType }), "registering the job type");
    const submitWindow = s.window("submit");
    const submitted = await s.within(
      s.producer.call<BatchesResult>("batches", { first: 0, n, batchSize: p.submitBatch, inflight: p.submitInflight }),
      "submitting",
    );
    const submit = submitWindow.end();
    const window = s.window("processing");
    const started = await s.startWorkers({ jobType, concurrency: p.concurrency, prefetch: p.prefetch, recordTimes: false, progressMs: 10 });
    await s.waitForFinished(n);
    const processing = window.end();
    const reports = await s.reports();
    const misreported = await verify(s, jobType, reports, n);
    const t0 = Math.min(...started.map((w) => w.startedAt));
    const t1 = Math.max(...reports.map((r) => r.lastCompletedAt));
    return {
      tasksPerSec: perSecond(n, t0, t1),
      submitTasksPerSec: perSecond(n, submitted.startedAt, submitted.endedAt),
      processSeconds: round((t1 - t0) / 1000, 3),
      connectMs: round(Math.max(...started.map((w) => w.connectedAt - w.startedAt)), 1),
      serverRssMaxMb: round(s.rss.maxMb, 1),
      processing,
      processingCpuUsPerTask: cpuPerTask(processing, n),
      submit,
      submitCpuUsPerTask: cpuPerTask(submit, n),
      backgroundBusyPct: s.backgroundBusyPct,
      misreportedOutcomes: count(misreported),
      database: s.settings,
      statements: await s.statements(),
    };
  });
}

/** W2: an idle, connected worker; single Submits on a fixed schedule; submit-call -> handler-start latency. */
async function latency(label: string, options: SessionOptions, p: Params): Promise<RunResult> {
  const jobType = `bench.w2.${tag()}`;
  return withSession(label, options, 1, async (s) => {
    await s.within(s.producer.call("connect", { baseUrl: s.server.baseUrl, apiKey: s.server.apiKey, jobType }), "registering the job type");
    await s.startWorkers({ jobType, concurrency: p.concurrency, prefetch: p.prefetch, recordTimes: true, progressMs: 10 });
    const warmup = p.latencyWarmup;
    await s.within(s.producer.call<PacedResult>("paced", { first: 0, n: warmup, intervalMs: p.latencyIntervalMs }), "warming up");
    await s.waitForFinished(warmup);
    await new Promise((resolve) => setTimeout(resolve, 200)); // idle again
    const window = s.window("measured");
    const paced = await s.within(s.producer.call<PacedResult>("paced", { first: warmup, n: p.latencyTasks, intervalMs: p.latencyIntervalMs }), "submitting");
    await s.waitForFinished(warmup + p.latencyTasks);
    const usage = window.end();
    const reports = await s.reports();
    const misreported = await verify(s, jobType, reports, warmup + p.latencyTasks);
    const times = new Float64Array(new Uint8Array(Buffer.from(reports[0]!.startTimes, "base64")).buffer);
    const latencies = paced.submitAt.map((at, k) => times[warmup + k]! - at);
    const acks = paced.submitAt.map((at, k) => paced.ackAt[k]! - at);
    const ms = (v: number) => round(v, 3);
    if (p.latenciesOut !== undefined) {
      // In submit order, with each submit's time on the clock every process shares (stats.ts `now`), so
      // stalls can be matched with other processes' logs (bench/README.md, "W2's tail").
      await appendFile(p.latenciesOut, JSON.stringify({ run: label, latencyMs: latencies.map(ms), submitAckMs: acks.map(ms), submitAtMs: paced.submitAt.map(ms) }) + "\n");
    }
    return {
      p50Ms: ms(percentile(latencies, 50)),
      p95Ms: ms(percentile(latencies, 95)),
      p99Ms: ms(percentile(latencies, 99)),
      maxMs: ms(Math.max(...latencies)),
      meanMs: ms(latencies.reduce((a, b) => a + b, 0) / latencies.length),
      submitAckP50Ms: ms(percentile(acks, 50)),
      submitAckP99Ms: ms(percentile(acks, 99)),
      /** Submit answered -> handler started (wake-up, claim, assignment, worker); negative if the handler ran first. */
      ackToStartP50Ms: ms(percentile(paced.ackAt.map((at, k) => times[warmup + k]! - at), 50)),
      /** How late the producer's schedule ran (timer jitter), p99. */
      scheduleLagP99Ms: ms(percentile(paced.submitAt.map((at, k) => at - paced.submitAt[0]! - k * p.latencyIntervalMs), 99)),
      serverRssMaxMb: round(s.rss.maxMb, 1),
      usage,
      cpuUsPerTask: cpuPerTask(usage, p.latencyTasks),
      backgroundBusyPct: s.backgroundBusyPct,
      misreportedOutcomes: count(misreported),
      database: s.settings,
      statements: await s.statements(),
    };
  });
}

/** W3: a connected worker consumes while one producer submits n tasks in batches; first submit to last completion. */
async function mixed(label: string, options: SessionOptions, p: Params): Promise<RunResult> {
  const jobType = `bench.w3.${tag()}`;
  const n = p.n;
  return withSession(label, options, 1, async (s) => {
    await s.within(s.producer.call("connect", { baseUrl: s.server.baseUrl, apiKey: s.server.apiKey, jobType }), "registering the job type");
    await s.startWorkers({ jobType, concurrency: p.concurrency, prefetch: p.prefetch, recordTimes: false, progressMs: 10 });
    const window = s.window("measured");
    const submitted = await s.within(s.producer.call<BatchesResult>("batches", { first: 0, n, batchSize: p.mixedBatch, inflight: p.mixedInflight }), "submitting");
    await s.waitForFinished(n);
    const usage = window.end();
    const reports = await s.reports();
    const misreported = await verify(s, jobType, reports, n);
    const last = Math.max(...reports.map((r) => r.lastCompletedAt));
    return {
      tasksPerSec: perSecond(n, submitted.startedAt, last),
      submitTasksPerSec: perSecond(n, submitted.startedAt, submitted.endedAt),
      seconds: round((last - submitted.startedAt) / 1000, 3),
      serverRssMaxMb: round(s.rss.maxMb, 1),
      usage,
      cpuUsPerTask: cpuPerTask(usage, n),
      backgroundBusyPct: s.backgroundBusyPct,
      misreportedOutcomes: count(misreported),
      database: s.settings,
      statements: await s.statements(),
    };
  });
}

/** w3loop: W3 over and over on one server for loopSeconds; is the server's RSS flat? */
async function mixedLoop(label: string, options: SessionOptions, p: Params): Promise<RunResult> {
  const jobType = `bench.w3loop.${tag()}`;
  const n = p.n;
  return withSession(label, options, 1, async (s) => {
    await s.within(s.producer.call("connect", { baseUrl: s.server.baseUrl, apiKey: s.server.apiKey, jobType }), "registering the job type");
    await s.startWorkers({ jobType, concurrency: p.concurrency, prefetch: p.prefetch, recordTimes: false, progressMs: 10 });
    const window = s.window("measured");
    const loopStart = Date.now();
    const rates: number[] = [];
    const rssAfter: number[] = [];
    let iterations = 0;
    while (Date.now() - loopStart < p.loopSeconds * 1000) {
      const submitted = await s.within(
        s.producer.call<BatchesResult>("batches", { first: iterations * n, n, batchSize: p.mixedBatch, inflight: p.mixedInflight }),
        `submitting (iteration ${iterations + 1})`,
      );
      iterations += 1;
      await s.waitForFinished(iterations * n);
      rates.push(perSecond(n, submitted.startedAt, s.lastCompletedAt()));
      rssAfter.push(round(s.rss.sample() ?? Number.NaN, 1));
      process.stderr.write(`  ${label}: iteration ${iterations}: ${rates.at(-1)} tasks/s, server RSS ${rssAfter.at(-1)} MB\n`);
    }
    const usage = window.end();
    const reports = await s.reports();
    const misreported = await verify(s, jobType, reports, iterations * n);
    // RSS by minute of the loop: the peak of each minute.
    const start = s.rss.timeline.find((x) => x.rssMb > 0)?.t ?? 0;
    const minutes: number[] = [];
    for (const { t, rssMb } of s.rss.timeline) {
      const m = Math.floor((t - start) / 60_000);
      minutes[m] = Math.max(minutes[m] ?? 0, rssMb);
    }
    const firstMinute = minutes[0] ?? Number.NaN;
    const lastMinute = minutes.at(-1) ?? Number.NaN;
    return {
      iterations,
      tasks: iterations * n,
      tasksPerSec: round(median(rates), 0),
      tasksPerSecFirst: rates[0],
      tasksPerSecLast: rates.at(-1),
      rssFirstMinuteMaxMb: round(firstMinute, 1),
      rssLastMinuteMaxMb: round(lastMinute, 1),
      rssGrowthMb: round(lastMinute - firstMinute, 1),
      rssByMinuteMb: minutes.map((v) => round(v, 1)).join(" "),
      rssAfterIterationMb: rssAfter.join(" "),
      usage,
      cpuUsPerTask: cpuPerTask(usage, iterations * n),
      backgroundBusyPct: s.backgroundBusyPct,
      misreportedOutcomes: count(misreported),
      database: s.settings,
    };
  });
}

const below = (value: number, limit: number) => ({ value, pass: value <= limit });
const above = (value: number, limit: number) => ({ value, pass: value >= limit });
const num = (r: RunResult, key: string) => r[key] as number;

export const workloads: Record<string, Workload> = {
  w1: {
    description: "burn-down: N tasks submitted with SubmitBatch, then one worker (C=32) processes them",
    default: true,
    run: (label, options, p) => burnDown(label, options, p, p.n, 1),
    targets: (m) => [{ metric: "W1 tasks/s", target: ">= 45,000", ...above(num(m, "tasksPerSec"), 45_000) }],
  },
  w1x4: {
    description: "W1 with 4 worker processes (C=32 each)",
    default: true,
    run: (label, options, p) => burnDown(label, options, p, p.n, p.workers),
    targets: () => [],
  },
  w2: {
    description: "latency: idle connected worker; single Submits every 5 ms; submit call -> handler start",
    default: true,
    run: latency,
    targets: (m) => [
      { metric: "W2 p50 ms", target: "<= 2", ...below(num(m, "p50Ms"), 2) },
      { metric: "W2 p99 ms", target: "<= 5", ...below(num(m, "p99Ms"), 5) },
    ],
  },
  w3: {
    description: "mixed: one producer submits N tasks in batches of 100 while one worker consumes",
    default: true,
    run: mixed,
    targets: (m) => [{ metric: "W3 tasks/s", target: ">= 30,000", ...above(num(m, "tasksPerSec"), 30_000) }],
  },
  rss100k: {
    description: "W1 with 100,000 pending tasks: the server's peak RSS",
    default: false,
    // At today's ~1,000 tasks/s (and a claim that sorts every pending row), 100,000 tasks take minutes.
    extraDeadlineMs: (p) => p.rssTasks * 10,
    run: (label, options, p) => burnDown(label, options, p, p.rssTasks, 1),
    targets: (m) => [{ metric: "server RSS MB, 100k pending", target: "< 250", ...below(num(m, "serverRssMaxMb"), 249.99) }],
  },
  w3loop: {
    description: "W3 in a loop for --loop-seconds (default 300) on one server: is its RSS flat?",
    default: false,
    extraDeadlineMs: (p) => p.loopSeconds * 1000,
    run: mixedLoop,
    targets: (m) => [
      // "Flat": the last minute's peak within 10% of the first minute's.
      { metric: "RSS growth MB over the loop", target: "<= 10% of the first minute", ...below(num(m, "rssGrowthMb"), 0.1 * num(m, "rssFirstMinuteMaxMb")) },
    ],
  },
};
