/**
 * The Taskwire server as its own process, started the way users start it (`npm start`: compiled,
 * `taskwire server start`), with the embedded PostgreSQL under a data folder or with --database-url.
 */
import { execFileSync, spawn } from "node:child_process";
import { createWriteStream, readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { createApiKey } from "../src/auth/key-admin.js";
import { freePort } from "../src/store/embedded-postgres.js";

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** A running server process. */
export interface ServerProcess {
  readonly pid: number;
  /** http://127.0.0.1:PORT, for the SDK (gRPC over HTTP/2). */
  readonly baseUrl: string;
  /** The database it uses, for the harness's own checks (the embedded one's URL when embedded). */
  readonly databaseUrl: string;
  /** An API key (producer and worker) the harness created, so that every request is authenticated as in production. */
  readonly apiKey: string;
  /** Resolves with the exit code once the process has exited. */
  readonly exited: Promise<number | null>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
  stop(graceMs?: number): Promise<void>;
}

export interface ServerOptions {
  /** External PostgreSQL; unset: the embedded one under dataDir. */
  databaseUrl?: string;
  dataDir: string;
  /** Where the server's stdout and stderr go. */
  logFile: string;
  /** Extra node flags, e.g. ["--cpu-prof", "--cpu-prof-dir", dir]. */
  nodeFlags?: string[];
  /** How long to wait for /healthz. */
  startTimeoutMs?: number;
}


const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const SERVER_ENTRY = "dist/src/cli/main.js";
/** The node flags of `npm start` (package.json), so the bench runs the server as users do. */
const SERVER_NODE_FLAGS = startScriptFlags();

function startScriptFlags(): string[] {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { scripts: { start: string } };
  const words = pkg.scripts.start.split(/\s+/);
  if (words[0] !== "node" || !words.includes(SERVER_ENTRY)) throw new Error(`package.json's start script no longer runs "node <flags> ${SERVER_ENTRY}": ${pkg.scripts.start}`);
  return words.slice(1, words.indexOf(SERVER_ENTRY));
}

/** Compiles the server as `npm start`'s prestart does; once per bench invocation. */
export function buildServer(): void {
  execFileSync(process.execPath, [path.join(repo, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.build.json"], { cwd: repo, stdio: "inherit" });
}

/** Starts `taskwire server start` on a free port and waits until /healthz answers 200. */
export async function startServerProcess(options: ServerOptions): Promise<ServerProcess> {
  const port = await freePort();
  const args = [...SERVER_NODE_FLAGS, ...(options.nodeFlags ?? []), SERVER_ENTRY, "server", "start", "--port", String(port), "--log-level", "warn"];
  if (options.databaseUrl !== undefined) args.push("--database-url", options.databaseUrl);
  else args.push("--data-dir", options.dataDir);
  const env = { ...process.env };
  delete env.TASKWIRE_DATABASE_URL;
  delete env.TASKWIRE_DATA_DIR;
  const log = createWriteStream(options.logFile, { flags: "a" });
  const child = spawn(process.execPath, args, { cwd: repo, env, stdio: ["ignore", "pipe", "pipe"] });
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  // If the harness exits (Ctrl-C, a crash), the server must not outlive it.
  const orphaned = () => child.kill("SIGTERM");
  process.once("exit", orphaned);
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code, signal) => {
      process.off("exit", orphaned);
      exitCode = code ?? (signal === null ? null : 128);
      resolve(exitCode);
    }),
  );
  const baseUrl = `http://127.0.0.1:${port}`;
  const stop = async (graceMs = 20_000) => {
    if (exitCode !== undefined) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    await exited;
    clearTimeout(timer);
  };

  const deadline = Date.now() + (options.startTimeoutMs ?? 60_000);
  for (;;) {
    if (exitCode !== undefined) throw new Error(`the server exited with ${exitCode} before it was ready; see ${options.logFile}`);
    if (Date.now() > deadline) {
      await stop(2_000);
      throw new Error(`the server was not ready within ${options.startTimeoutMs ?? 60_000} ms; see ${options.logFile}`);
    }
    const ok = await fetch(`${baseUrl}/healthz`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) break;
    await sleep(100);
  }
  const databaseUrl = options.databaseUrl ?? (await embeddedUrl(options.dataDir));
  return { pid: child.pid!, baseUrl, databaseUrl, apiKey: await createBenchKey(databaseUrl), exited, stop };
}

/** Creates the run's API key on the server's database, as `taskwire keys create` would (the server then requires keys). */
async function createBenchKey(databaseUrl: string): Promise<string> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 1 });
  try {
    const { token } = await createApiKey(pool, { namespace: "default", roles: ["producer", "worker"], expiresInMs: null, description: "bench", actor: "cli" });
    return token;
  } finally {
    await pool.end();
  }
}

/** The embedded PostgreSQL's URL, from the data folder: its credentials file and postmaster.pid (line 4 is the port). */
async function embeddedUrl(dataDir: string): Promise<string> {
  const { password } = JSON.parse(await readFile(path.join(dataDir, "credentials.json"), "utf8")) as { password: string };
  const port = Number((await readFile(path.join(dataDir, "pgdata", "postmaster.pid"), "utf8")).split("\n")[3]);
  return `postgresql://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/taskwire`;
}
