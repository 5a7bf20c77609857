/**
 * tap's `after` script (.taprc): runs once when every test file of the run has finished. Drops this
 * run's template and, when no other tap run is still using it, stops the private server.
 */
import { readFile, rm } from "node:fs/promises";
import {
  ENV_FILE,
  RUN_ID,
  type TestEnv,
  dropDatabase,
  inspectServer,
  liveRuns,
  postgresUser,
  runFile,
  stopServer,
  withServerLock,
} from "./test-postgres.js";

const env = await readFile(runFile(RUN_ID), "utf8").then(
  (text) => JSON.parse(text) as TestEnv,
  () => undefined,
);

if (env) {
  try {
    await dropDatabase(env.adminUrl, env.template);
  } catch (error) {
    process.stderr.write(`# could not drop ${env.template}: ${error instanceof Error ? error.message : String(error)}\n`);
  }
  const latest = await readFile(ENV_FILE, "utf8").then((text) => JSON.parse(text) as TestEnv, () => undefined);
  if (latest?.template === env.template) await rm(ENV_FILE, { force: true });

  if (env.privateServer) {
    const runAs = await postgresUser();
    await withServerLock(async () => {
      await rm(runFile(RUN_ID), { force: true });
      if ((await liveRuns(RUN_ID)).length > 0) return; // another tap run still uses the server
      if ((await inspectServer()).running) await stopServer(runAs, "fast");
    });
  } else {
    await rm(runFile(RUN_ID), { force: true });
  }
}
