/**
 * One workload run's processes: a fresh server process, a producer and N worker processes, their
 * resource use, a hard deadline, and the cleanup that stops them all whatever happens.
 */
import { appendFileSync } from "node:fs";
import path from "node:path";
import { forkChild, type Child } from "./child.js";
import { checkpoint, isDurable, postgresPids, readSettings, resetStatementStats, topStatements, type DbSettings, type StatementStat } from "./database.js";
import { cpuBetween, cpuSnapshot, machineCpu, RssSampler, type CpuSnapshot } from "./proc-stats.js";
import { startServerProcess, type ServerProcess } from "./server-process.js";
import { now, round } from "./stats.js";
import type { WorkerProgress, WorkerReport, WorkerStartArgs, WorkerStarted } from "./worker-process.js";

/** Harness-wide settings the sessions need. */
export interface SessionOptions {
  databaseUrl?: string;
  dataDir: string;
  logDir: string;
  /** Hard limit for the whole run, ms. */
  deadlineMs: number;
  allowNonDurable: boolean;
  /** Directory for the server's V8 CPU profile (node --cpu-prof); unset: none. */
  cpuProfDir?: string;
  /** Extra node flags for the server process. */
  serverNodeFlags: string[];
  /** Collect pg_stat_statements when the database has it loaded. */
  pgStats: boolean;
}

/** Resource use over one measured window. CPU is user + system time from /proc; "Pct" is % of one core. */
export interface Usage {
  seconds: number;
  serverCpuSeconds: number;
  serverCpuPct: number;
  /** All processes of the PostgreSQL cluster (when it runs on this machine). */
  dbCpuSeconds: number;
  dbCpuPct: number;
  /** All worker processes together. */
  workersCpuSeconds: number;
  producerCpuSeconds: number;
  /** The whole machine's busy time / wall time, in % of all cores. */
  machineBusyPct: number;
  /** Peak server RSS during the window, MB. */
  serverRssPeakMb: number;
}

/** A window over which resource use is measured. */
export interface Window {
  end(): Usage;
}

/** The whole machine's busy time over `ms`, in % of all cores. */
async function machineBusyOver(ms: number): Promise<number> {
  const before = machineCpu();
  await new Promise((resolve) => setTimeout(resolve, ms));
  const after = machineCpu();
  return round((100 * (after.busy - before.busy)) / Math.max(0.01, after.total - before.total), 1);
}

/** Thrown when a run passes its deadline. */
export class DeadlineError extends Error {
  override name = "DeadlineError";
}

export class Session {
  readonly rss: RssSampler;
  readonly workers: Child[] = [];
  producer!: Child;
  /** The machine's busy % over 0.5 s with every process started and idle: others' load (tests, builds) shows here. */
  backgroundBusyPct = 0;
  private readonly children: Child[] = [];
  private readonly completed = new Map<Child, WorkerProgress>();
  private readonly waiters = new Set<() => void>();

  private constructor(
    private readonly label: string,
    private readonly options: SessionOptions,
    readonly server: ServerProcess,
    /** The database's durability settings, as it reported them. */
    readonly settings: DbSettings,
    private readonly dbPids: () => number[],
    private readonly deadline: number,
  ) {
    this.rss = new RssSampler(server.pid, 100, now);
  }

  /** Starts the server and forks a producer and `workers` worker processes; checks durability. */
  static async open(name: string, options: SessionOptions, workers: number): Promise<Session> {
    const deadline = Date.now() + options.deadlineMs;
    const log = (what: string) => path.join(options.logDir, `${name}.${what}.log`);
    const server = await startServerProcess({
      ...(options.databaseUrl === undefined ? {} : { databaseUrl: options.databaseUrl }),
      dataDir: options.dataDir,
      logFile: log("server"),
      nodeFlags: [
        ...options.serverNodeFlags,
        ...(options.cpuProfDir === undefined ? [] : ["--cpu-prof", "--cpu-prof-dir", options.cpuProfDir, "--cpu-prof-name", `${name}.server.cpuprofile`]),
      ],
    });
    let session: Session | undefined;
    try {
      const settings = await readSettings(server.databaseUrl);
      if (!isDurable(settings) && !options.allowNonDurable) {
        throw new Error(`the database is not durable (fsync=${settings.fsync}, synchronous_commit=${settings.synchronousCommit}); pass --allow-non-durable to measure anyway`);
      }
      session = new Session(name, options, server, settings, await postgresPids(server.databaseUrl), deadline);
      const [producer, ...forked] = await Promise.all([
        forkChild("producer-process.ts", "producer", log("producer")),
        ...Array.from({ length: workers }, (_, k) =>
          forkChild(
            "worker-process.ts",
            `worker${k + 1}`,
            log(`worker${k + 1}`),
            options.cpuProfDir === undefined ? [] : ["--cpu-prof", "--cpu-prof-dir", options.cpuProfDir, "--cpu-prof-name", `${name}.worker${k + 1}.cpuprofile`],
          ),
        ),
      ]);
      session.producer = producer!;
      session.children.push(producer!, ...forked);
      for (const w of forked) {
        session.workers.push(w);
        w.on("progress", (data) => session!.onProgress(w, data as WorkerProgress));
      }
      await checkpoint(server.databaseUrl);
      if (options.pgStats) await resetStatementStats(server.databaseUrl);
      session.backgroundBusyPct = await machineBusyOver(500);
      return session;
    } catch (error) {
      if (session !== undefined) await session.close();
      else await server.stop();
      throw error;
    }
  }

  /** Races `promise` against the run's deadline. */
  within<T>(promise: Promise<T>, what: string | (() => string)): Promise<T> {
    const describe = () => (typeof what === "string" ? what : what());
    const left = this.deadline - Date.now();
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new DeadlineError(`deadline passed while ${describe()}`)), Math.max(0, left));
    });
    const serverDied = this.server.exited.then((code) => Promise.reject(new Error(`the server exited with ${code} while ${describe()}`)));
    return Promise.race([promise, expired, serverDied]).finally(() => clearTimeout(timer));
  }

  /** Starts every worker (in parallel); resolves once all are connected. */
  startWorkers(args: Omit<WorkerStartArgs, "baseUrl" | "apiKey">): Promise<WorkerStarted[]> {
    return this.within(Promise.all(this.workers.map((w) => w.call<WorkerStarted>("start", { ...args, baseUrl: this.server.baseUrl, apiKey: this.server.apiKey }))), "starting workers");
  }

  /** Attempts the workers have finished (completed or otherwise). */
  totalFinished(): number {
    let total = 0;
    for (const p of this.completed.values()) total += p.completed + p.other;
    return total;
  }

  /** The latest completion any worker has reported. */
  lastCompletedAt(): number {
    let last = 0;
    for (const p of this.completed.values()) last = Math.max(last, p.lastCompletedAt);
    return last;
  }

  /**
   * Resolves once the workers together have finished `target` attempts. Attempts that end other than
   * completed count too (the run's verification reports them), so a misreported outcome cannot hang the run.
   */
  waitForFinished(target: number): Promise<void> {
    // Long waits say how far they got every 10 s.
    const started = Date.now();
    const ticker = setInterval(() => {
      const seconds = Math.round((Date.now() - started) / 1000);
      process.stderr.write(`    ${this.label}: ${this.totalFinished().toLocaleString("en-US")} of ${target.toLocaleString("en-US")} done after ${seconds} s, server RSS ${Math.round(this.rss.sample() ?? 0)} MB\n`);
    }, 10_000);
    return this.within(
      new Promise<void>((resolve) => {
        const check = () => {
          if (this.totalFinished() < target) return;
          this.waiters.delete(check);
          resolve();
        };
        this.waiters.add(check);
        check();
      }),
      () => `waiting for ${target} tasks to finish (have ${this.totalFinished()})`,
    ).finally(() => clearInterval(ticker));
  }

  /** Every worker's final report. */
  reports(): Promise<WorkerReport[]> {
    return this.within(Promise.all(this.workers.map((w) => w.call<WorkerReport>("report"))), "collecting worker reports");
  }

  /** Opens a resource-use window now; with --cpu-prof, its bounds go to <label>.windows.json beside the profile. */
  window(name: string): Window {
    const t0 = now();
    const groups = {
      server: () => [this.server.pid],
      db: this.dbPids,
      workers: () => this.workers.map((w) => w.pid),
      producer: () => (this.producer === undefined ? [] : [this.producer.pid]),
    };
    const before = Object.fromEntries(Object.entries(groups).map(([k, pids]) => [k, cpuSnapshot(pids())])) as Record<keyof typeof groups, CpuSnapshot>;
    const machine0 = machineCpu();
    this.rss.resetPeak();
    return {
      end: () => {
        const seconds = (now() - t0) / 1000;
        const cpu = (k: keyof typeof groups) => cpuBetween(before[k], cpuSnapshot(groups[k]()));
        const server = cpu("server");
        const db = cpu("db");
        const machine1 = machineCpu();
        this.rss.sample();
        if (this.options.cpuProfDir !== undefined) {
          appendFileSync(path.join(this.options.cpuProfDir, `${this.label}.windows.jsonl`), `${JSON.stringify({ name, fromMs: t0, toMs: t0 + seconds * 1000 })}\n`);
        }
        return {
          seconds: round(seconds, 3),
          serverCpuSeconds: round(server, 2),
          serverCpuPct: round((100 * server) / seconds, 1),
          dbCpuSeconds: round(db, 2),
          dbCpuPct: round((100 * db) / seconds, 1),
          workersCpuSeconds: round(cpu("workers"), 2),
          producerCpuSeconds: round(cpu("producer"), 2),
          machineBusyPct: round((100 * (machine1.busy - machine0.busy)) / Math.max(0.01, machine1.total - machine0.total), 1),
          serverRssPeakMb: round(this.rss.peakMb, 1),
        };
      },
    };
  }

  /** Top statements by execution time, when pg_stat_statements is loaded. */
  async statements(): Promise<StatementStat[] | undefined> {
    if (!this.options.pgStats) return undefined;
    return topStatements(this.server.databaseUrl).catch(() => undefined);
  }

  /** Stops workers (draining), the producer, then the server; kills whatever does not stop in time. */
  async close(): Promise<void> {
    this.rss.stop();
    const polite = async (c: Child, op: string) => {
      const timer = setTimeout(() => c.kill(), 8_000);
      await c.call(op).catch(() => undefined);
      c.end();
      await c.exited;
      clearTimeout(timer);
    };
    await Promise.all([...this.workers.map((w) => polite(w, "stop")), ...(this.producer === undefined ? [] : [polite(this.producer, "close")])]);
    await this.server.stop();
  }

  /** Kills every child at once (deadline or Ctrl-C). */
  killAll(): void {
    for (const c of this.children) c.kill();
  }

  private onProgress(worker: Child, progress: WorkerProgress): void {
    this.completed.set(worker, progress);
    for (const w of [...this.waiters]) w();
  }
}
