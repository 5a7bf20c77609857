/**
 * tap's `before` script (.taprc): runs once per `tap` run, in its own process, before any test file.
 * Makes a PostgreSQL available (TASKWIRE_TEST_DATABASE_URL, or the private server under
 * .taskwire-test/pgdata, started with pg_ctl so it outlives this process), migrates this run's
 * template database, and writes where both are (.taskwire-test/env.json and runs/<run>.json).
 * test/setup/after.ts undoes it.
 */
import { rm } from "node:fs/promises";
import { performance } from "node:perf_hooks";
import { openDatabase, prepareSchema } from "../../src/store/orm.js";
import {
  RUN_ID,
  TEMPLATE_PREFIX,
  TEST_DATABASE_PREFIX,
  adminUrlFor,
  clusterIsCurrent,
  dropDatabase,
  initCluster,
  inspectServer,
  isAlive,
  liveRuns,
  postgresUser,
  runFile,
  serverAnswers,
  startServer,
  stopServer,
  templateName,
  withAdmin,
  withDatabase,
  withServerLock,
  writeRunEnv,
} from "./test-postgres.js";

const startedAt = performance.now();
const external = process.env.TASKWIRE_TEST_DATABASE_URL;
const template = templateName(RUN_ID);

/**
 * Under the server lock: initdb if needed, reuse a server that answers, replace one that does not,
 * and register this run so that no other run's `after` stops the server under it.
 */
async function ensurePrivateServer(): Promise<{ adminUrl: string; reused: boolean }> {
  const runAs = await postgresUser();
  return withServerLock(async () => {
    let state = await inspectServer();
    if (state.running && !(await serverAnswers(state.port))) {
      // Up but not answering (crashed backend, stuck shutdown): nothing in it is worth keeping.
      await stopServer(runAs, "immediate");
      state = { running: false };
    }
    if (!(await clusterIsCurrent(runAs))) {
      if (state.running) await stopServer(runAs, "immediate");
      state = { running: false };
      await initCluster(runAs);
    }
    const port = state.running ? state.port : await startServer(runAs);
    const adminUrl = adminUrlFor(port);
    await writeRunEnv(RUN_ID, { adminUrl, template, privateServer: true });
    return { adminUrl, reused: state.running };
  });
}

/**
 * Drops what killed runs left on the private server: templates of runs and databases of test
 * processes that no longer exist (the pid is part of each name). Not done on a shared server
 * (TASKWIRE_TEST_DATABASE_URL), whose other users' processes we cannot see.
 */
async function dropStaleDatabases(adminUrl: string): Promise<void> {
  await withAdmin(adminUrl, async (client) => {
    const { rows } = await client.query<{ datname: string }>(
      "SELECT datname FROM pg_database WHERE starts_with(datname, $1) OR starts_with(datname, $2)",
      [TEST_DATABASE_PREFIX, TEMPLATE_PREFIX],
    );
    for (const { datname } of rows) {
      const pid = Number.parseInt(/_(\d+)(?:_|$)/.exec(datname)?.[1] ?? "", 10);
      if (!isAlive(pid)) await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(datname)} WITH (FORCE)`);
    }
  });
}

/** Creates this run's template from template0 (nothing from template1 leaks in) and migrates it. */
async function createTemplate(adminUrl: string): Promise<void> {
  await withAdmin(adminUrl, async (client) => {
    const name = client.escapeIdentifier(template);
    await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await client.query(`CREATE DATABASE ${name} TEMPLATE template0 ENCODING 'UTF8'`);
  });
  const database = await openDatabase(withDatabase(adminUrl, template), { poolSize: 2 });
  try {
    await prepareSchema(database, true);
  } finally {
    await database.close();
  }
}

let adminUrl: string | undefined;
try {
  let where: string;
  if (external) {
    adminUrl = external;
    where = `TASKWIRE_TEST_DATABASE_URL (${new URL(external).host})`;
  } else {
    const server = await ensurePrivateServer();
    adminUrl = server.adminUrl;
    where = `private PostgreSQL on ${new URL(adminUrl).host} (${server.reused ? "reused" : "started"})`;
    await dropStaleDatabases(adminUrl);
  }
  await createTemplate(adminUrl);
  if (external) await writeRunEnv(RUN_ID, { adminUrl, template, privateServer: false });
  const ms = Math.round(performance.now() - startedAt);
  process.stderr.write(`# test database: ${where}, template ${template} migrated, in ${ms} ms\n`);
} catch (error) {
  process.stderr.write(`# test database setup failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
  // Leave nothing behind: tap skips `after` when `before` fails.
  if (adminUrl) await dropDatabase(adminUrl, template).catch(() => undefined);
  if (!external) {
    const runAs = await postgresUser();
    await withServerLock(async () => {
      await rm(runFile(RUN_ID), { force: true });
      if ((await liveRuns(RUN_ID)).length === 0 && (await inspectServer()).running) await stopServer(runAs, "fast");
    }).catch(() => undefined);
  }
}
