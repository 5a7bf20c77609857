/**
 * `npm run bench [-- <workload...>] [options]`: runs the workloads of issue #6 against a real server
 * process, prints one JSON line per workload (stdout) and a human table (stderr). See bench/README.md.
 */
import { Command, InvalidArgumentError, Option } from "commander";
import { execFileSync } from "node:child_process";
import { appendFileSync } from "node:fs";
import { chmod, mkdir, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { machineCpu } from "./proc-stats.js";
import { buildServer } from "./server-process.js";
import type { SessionOptions } from "./session.js";
import { medianOf, table } from "./stats.js";
import { workloads, type Params, type RunResult, type Target } from "./workloads.js";

const int = (min: number) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`a whole number >= ${min}`);
  return n;
};

const program = new Command("bench")
  .description("Taskwire benchmarks: W1 burn-down, W1 with 4 workers, W2 latency, W3 mixed (default); rss100k and w3loop on request")
  .argument("[workloads...]", `any of ${Object.keys(workloads).join(", ")}, or "all"; default: ${Object.keys(workloads).filter((k) => workloads[k]!.default).join(" ")}`)
  .option("--runs <n>", "runs per workload; the figures are their median", int(1), 3)
  .addOption(new Option("--database-url <url>", "use this PostgreSQL (default: the server's embedded one, in a fresh temporary data folder)").env("TASKWIRE_BENCH_DATABASE_URL"))
  .option("--data-dir <dir>", "data folder for the embedded PostgreSQL (default: a fresh temporary one, removed afterwards)")
  .option("--n <n>", "tasks for W1, W1x4 and W3", int(1), 20_000)
  .option("--concurrency <c>", "handlers per worker process", int(1), 32)
  .option("--prefetch <p>", "tasks each worker holds ready beyond its running handlers (the SDK's prefetch option; 0 is the SDK's default)", int(0), 224)
  .option("--workers <k>", "worker processes for w1x4", int(1), 4)
  .option("--submit-batch <n>", "W1: tasks per SubmitBatch (max 1000)", int(1), 1_000)
  .option("--submit-inflight <n>", "W1: SubmitBatch calls in flight", int(1), 2)
  .option("--latency-tasks <n>", "W2: measured tasks", int(1), 500)
  .option("--latency-warmup <n>", "W2: warm-up tasks", int(0), 20)
  .option("--latency-interval <ms>", "W2: ms between Submits", int(1), 5)
  .option("--latencies-out <file>", "W2: append each run's per-task latencies (ms, in submit order) to this file as a JSON line")
  .option("--mixed-batch <n>", "W3: tasks per SubmitBatch", int(1), 100)
  .option("--mixed-inflight <n>", "W3: SubmitBatch calls in flight", int(1), 1)
  .option("--loop-seconds <s>", "w3loop: how long to loop", int(1), 300)
  .option("--rss-tasks <n>", "rss100k: pending tasks", int(1), 100_000)
  .option("--timeout <s>", "hard limit per workload run (rss100k: plus 10 ms per task; w3loop: plus --loop-seconds)", int(1), 180)
  .option("--out <file>", "also append the JSON lines to this file")
  .option("--server-node-flags <flags>", "extra node flags for the server process, space-separated (e.g. \"--max-semi-space-size=16\")")
  .option("--cpu-prof <dir>", "write V8 CPU profiles of the server and the workers per run into this folder (node --cpu-prof)")
  .option("--pg-stats", "report the top statements from pg_stat_statements (needs it in shared_preload_libraries)")
  .option("--allow-non-durable", "measure even if the database runs with fsync or synchronous_commit off")
  .option("--wait-idle <s>", "before each run, wait up to this long for the machine to be idle (< 15% busy)", int(0), 120)
  .option("--retry-busy <k>", "run again (up to k times per workload) when the machine was busy just before a run", int(0), 3)
  .option("--keep", "keep the temporary data folder and logs")
  .parse();

interface Options {
  runs: number;
  databaseUrl?: string;
  dataDir?: string;
  n: number;
  concurrency: number;
  prefetch: number;
  workers: number;
  submitBatch: number;
  submitInflight: number;
  latencyTasks: number;
  latencyWarmup: number;
  latencyInterval: number;
  latenciesOut?: string;
  mixedBatch: number;
  mixedInflight: number;
  loopSeconds: number;
  rssTasks: number;
  timeout: number;
  out?: string;
  cpuProf?: string;
  serverNodeFlags?: string;
  pgStats?: boolean;
  allowNonDurable?: boolean;
  keep?: boolean;
  waitIdle: number;
  retryBusy: number;
}

/** Above this % of all cores busy, the machine is not idle (other processes would skew the figures). */
const BUSY_PCT = 15;

const opts = program.opts<Options>();
const requested = program.args.length === 0 ? Object.keys(workloads).filter((k) => workloads[k]!.default) : program.args.flatMap((a) => (a === "all" ? Object.keys(workloads) : [a]));
for (const name of requested) if (workloads[name] === undefined) program.error(`unknown workload "${name}"; choose from ${Object.keys(workloads).join(", ")}`);

const params: Params = {
  n: opts.n,
  concurrency: opts.concurrency,
  prefetch: opts.prefetch,
  workers: opts.workers,
  submitBatch: opts.submitBatch,
  submitInflight: opts.submitInflight,
  latencyTasks: opts.latencyTasks,
  latencyWarmup: opts.latencyWarmup,
  latencyIntervalMs: opts.latencyInterval,
  latenciesOut: opts.latenciesOut,
  mixedBatch: opts.mixedBatch,
  mixedInflight: opts.mixedInflight,
  loopSeconds: opts.loopSeconds,
  rssTasks: opts.rssTasks,
};

buildServer();
const work = await mkdtemp(path.join(os.tmpdir(), "taskwire-bench-"));
// As root, the embedded PostgreSQL runs as the `postgres` user, which must be able to enter this folder.
await chmod(work, 0o755);
const logDir = path.join(work, "logs");
await mkdir(logDir);
const dataDir = path.resolve(opts.dataDir ?? path.join(work, "embedded"));
if (opts.cpuProf !== undefined) await mkdir(opts.cpuProf, { recursive: true });
const log = (line: string) => process.stderr.write(`${line}\n`);

const git = (...args: string[]) => {
  try {
    return execFileSync("git", args, { cwd: path.dirname(path.dirname(new URL(import.meta.url).pathname)), encoding: "utf8" }).trim();
  } catch {
    return "";
  }
};
const revision = {
  // A snapshot outside git (e.g. `git archive HEAD | tar -x`, to measure a fixed tree) names its commit in TASKWIRE_BENCH_REVISION.
  commit: git("rev-parse", "--short", "HEAD") || (process.env.TASKWIRE_BENCH_REVISION ?? "unknown"),
  /** Uncommitted changes under src/ (the figures are of the working tree, not the commit). */
  dirtySrcFiles: git("status", "--porcelain", "--", "src").split("\n").filter((l) => l !== "").length,
};
const machine = {
  cpu: os.cpus()[0]?.model ?? "unknown",
  cores: os.availableParallelism(),
  memoryGb: Math.round(os.totalmem() / 2 ** 30),
  kernel: os.release(),
  node: process.version,
  loadAvg1m: os.loadavg()[0] ?? 0,
};
log(`taskwire bench: ${requested.join(" ")}, ${opts.runs} run(s) each; ${opts.databaseUrl === undefined ? `embedded PostgreSQL in ${dataDir}` : "--database-url"}; logs in ${logDir}`);
log(`revision ${revision.commit}${revision.dirtySrcFiles > 0 ? ` + ${revision.dirtySrcFiles} uncommitted file(s) in src/` : ""}`);
log(`machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGb} GB, Node ${machine.node}, load ${machine.loadAvg1m.toFixed(2)}`);

let failed = false;
const stopping = () => {
  log("interrupted; stopping");
  process.exit(130); // children exit when their IPC channel closes; the server gets SIGTERM below
};
process.once("SIGINT", stopping);

for (const name of requested) {
  const workload = workloads[name]!;
  const runs: RunResult[] = [];
  let error: string | undefined;
  let redo = opts.retryBusy;
  let attempt = 0;
  for (let run = 1; run <= opts.runs && error === undefined; run++) {
    attempt += 1;
    const label = `${name}.${attempt}`;
    const session: SessionOptions = {
      ...(opts.databaseUrl === undefined ? {} : { databaseUrl: opts.databaseUrl }),
      dataDir,
      logDir,
      deadlineMs: opts.timeout * 1000 + (workload.extraDeadlineMs?.(params) ?? 0),
      allowNonDurable: opts.allowNonDurable === true,
      ...(opts.cpuProf === undefined ? {} : { cpuProfDir: path.resolve(opts.cpuProf) }),
      serverNodeFlags: opts.serverNodeFlags?.split(" ").filter((f) => f !== "") ?? [],
      pgStats: opts.pgStats === true,
    };
    await waitForIdle(opts.waitIdle);
    const started = Date.now();
    try {
      const result = await workload.run(label, session, params);
      log(`  ${label}: ${summary(result)} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
      const background = result.backgroundBusyPct as number;
      if (background > BUSY_PCT && redo > 0) {
        redo -= 1;
        run -= 1;
        log(`  discarded: the machine was ${background}% busy just before this run (other processes); running it again`);
        continue;
      }
      if (background > BUSY_PCT) log(`  warning: the machine was ${background}% busy just before this run (other processes); its figures are unreliable`);
      runs.push(result);
    } catch (e) {
      error = e instanceof Error ? e.message : String(e);
      log(`  ${label}: FAILED: ${error}\n  logs: ${logDir}`);
    }
  }
  const med = runs.length > 0 ? medianOf(runs.map(({ statements: _s, database: _d, ...rest }) => rest)) : {};
  const targets: Target[] = error === undefined && runs.length > 0 ? workload.targets(med) : [];
  const line = {
    workload: name,
    description: workload.description,
    ok: error === undefined,
    ...(error === undefined ? {} : { error }),
    runs: runs.length,
    median: med,
    targets,
    params: paramsFor(name),
    ...(opts.serverNodeFlags === undefined ? {} : { serverNodeFlags: opts.serverNodeFlags }),
    database: { kind: opts.databaseUrl === undefined ? "embedded" : "--database-url", ...(runs[0]?.database as object | undefined) },
    machine,
    revision,
    at: new Date().toISOString(),
    all: runs,
  };
  const json = JSON.stringify(line);
  process.stdout.write(`${json}\n`);
  if (opts.out !== undefined) appendFileSync(opts.out, `${json}\n`);
  if (runs.length > 0) printTable(name, runs, med, targets);
  if (error !== undefined) failed = true;
}

if (!opts.keep && !failed) {
  await rm(work, { recursive: true, force: true });
} else log(`kept ${work}`);
process.exit(failed ? 1 : 0);

/** Waits (up to `seconds`) until the whole machine is under BUSY_PCT busy over one second: other work skews the figures. */
async function waitForIdle(seconds: number): Promise<void> {
  const until = Date.now() + seconds * 1000;
  let warned = false;
  while (Date.now() < until) {
    const before = machineCpu();
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const after = machineCpu();
    const busy = (100 * (after.busy - before.busy)) / Math.max(0.01, after.total - before.total);
    if (busy < BUSY_PCT) return;
    if (!warned) log(`  waiting for the machine to be idle (${busy.toFixed(0)}% busy)...`);
    warned = true;
  }
  log(`  the machine is still busy after ${seconds} s; measuring anyway`);
}

function paramsFor(name: string): Record<string, number> {
  const c = { concurrency: params.concurrency, prefetch: params.prefetch };
  switch (name) {
    case "w1":
      return { n: params.n, workers: 1, ...c, submitBatch: params.submitBatch, submitInflight: params.submitInflight };
    case "w1x4":
      return { n: params.n, workers: params.workers, ...c, submitBatch: params.submitBatch, submitInflight: params.submitInflight };
    case "rss100k":
      return { n: params.rssTasks, workers: 1, ...c, submitBatch: params.submitBatch, submitInflight: params.submitInflight };
    case "w2":
      return { tasks: params.latencyTasks, warmup: params.latencyWarmup, intervalMs: params.latencyIntervalMs, ...c };
    case "w3":
      return { n: params.n, ...c, batch: params.mixedBatch, inflight: params.mixedInflight };
    default:
      return { n: params.n, ...c, batch: params.mixedBatch, inflight: params.mixedInflight, loopSeconds: params.loopSeconds };
  }
}

/** The headline figures of one run, for the progress line. */
function summary(r: RunResult): string {
  const parts: string[] = [];
  const put = (key: string, unit: string) => {
    if (typeof r[key] === "number") parts.push(`${key}=${(r[key] as number).toLocaleString("en-US")}${unit}`);
  };
  put("tasksPerSec", "");
  put("submitTasksPerSec", "");
  put("p50Ms", "");
  put("p99Ms", "");
  put("serverRssMaxMb", "");
  put("rssGrowthMb", "");
  return parts.join(" ");
}

/** Per-run figures, the median, and the targets. */
function printTable(name: string, runs: RunResult[], med: RunResult, targets: Target[]): void {
  const flat = (r: RunResult): [string, number][] => {
    const out: [string, number][] = [];
    for (const [k, v] of Object.entries(r)) {
      if (typeof v === "number") out.push([k, v]);
      else if (v !== null && typeof v === "object" && !Array.isArray(v)) {
        for (const [k2, v2] of Object.entries(v)) if (typeof v2 === "number") out.push([`${k}.${k2}`, v2]);
      }
    }
    return out;
  };
  const metrics = flat(med);
  const perRun = runs.map((r) => new Map(flat(r)));
  const rows = metrics.map(([k, v]) => [k, ...perRun.map((m) => m.get(k) ?? Number.NaN), v]);
  log(`\n${name}: ${workloads[name]!.description}`);
  log(table(["metric", ...runs.map((_, i) => `run ${i + 1}`), "median"], rows));
  const statements = runs.at(-1)?.statements as { query: string; calls: number; totalMs: number; meanMs: number; planMs: number }[] | undefined;
  if (statements !== undefined && statements.length > 0) {
    log(`\ntop statements (last run, pg_stat_statements):`);
    log(table(["exec ms", "plan ms", "calls", "mean ms", "query"], statements.map((s) => [s.totalMs, s.planMs, s.calls, s.meanMs, s.query])));
  }
  if (targets.length > 0) {
    log("");
    log(table(["target", "median", "goal", "met"], targets.map((t) => [t.metric, t.value, t.target, t.pass ? "yes" : "NO"])));
  }
  for (const [k, v] of Object.entries(med)) if (typeof v === "string") log(`${k}: ${v}`);
  log("");
}
