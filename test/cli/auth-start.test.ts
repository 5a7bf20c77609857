/**
 * The start rules of authentication, as users meet them through `taskwire server start` and
 * `taskwire keys create`: development mode on loopback with no key (one warning), the refusal of a
 * non-loopback bind with no key, --require-auth, and a running server that starts requiring keys
 * the moment the first key is created (by the CLI, on the same database).
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Code } from "@connectrpc/connect";
import t from "tap";
import { runCli, startedUrl } from "../helpers/cli-server.js";
import { createTestDatabaseUrl } from "../helpers/database.js";
import { rejection } from "../helpers/rejection.js";
import { clientsFor } from "../helpers/server.js";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const bin = path.join(repo, "bin/taskwire.js");
const execFileAsync = promisify(execFile);

/** `taskwire` with these arguments, not told of the test database (some tests want the embedded one). */
const run = (args: string[]) => runCli(args, { env: { ...process.env, TASKWIRE_DATABASE_URL: undefined } });

/** `taskwire keys create` on the database; returns the printed token. */
async function createKey(databaseUrl: string, namespace: string, roles: string): Promise<string> {
  const { stdout } = await execFileAsync(process.execPath, [bin, "keys", "create", "--namespace", namespace, "--role", roles, "--database-url", databaseUrl], { cwd: repo });
  return stdout.trim();
}

const DEV_WARNING = /development mode: no API key exists/g;

t.test("loopback with no key: development mode, warned once, every request in default with every role", async (t) => {
  const databaseUrl = await createTestDatabaseUrl(t);
  const r = run(["server", "start", "--database-url", databaseUrl, "--port", "0"]);
  const url = await startedUrl(t, r);
  const c = clientsFor(url, undefined);
  await c.jobTypes.registerJobType({ name: "dev.job" });
  for (let i = 0; i < 5; i++) await c.tasks.listTasks({});
  t.equal((await c.admin.listNamespaces({})).namespaces[0]?.name, "default", "even operator RPCs are allowed");
  t.equal(r.output().match(DEV_WARNING)?.length, 1, "the warning is logged once, not per request");
  r.child.kill("SIGTERM");
  t.equal(await r.exit, 0);
});

t.test("a non-loopback bind with no key refuses to start, saying how to create one", async (t) => {
  const databaseUrl = await createTestDatabaseUrl(t);
  const r = run(["server", "start", "--host", "0.0.0.0", "--port", "0", "--database-url", databaseUrl]);
  t.equal(await r.exit, 1);
  t.match(r.output(), /refusing to listen on 0\.0\.0\.0: no API key exists/);
  t.match(r.output(), /taskwire keys create --namespace default --role admin --database-url/);
});

t.test("--allow-unauthenticated-remote: a non-loopback bind with no key starts in development mode, loudly", async (t) => {
  const databaseUrl = await createTestDatabaseUrl(t);
  const r = run(["server", "start", "--host", "0.0.0.0", "--port", "0", "--allow-unauthenticated-remote", "--database-url", databaseUrl]);
  const url = (await startedUrl(t, r)).replace("0.0.0.0", "127.0.0.1");
  t.equal((await clientsFor(url, undefined).tasks.listTasks({})).totalCount, 0n, "requests without a key are served");
  t.match(r.output(), /anyone who reaches this address may do anything in namespace \\"default\\" until an API key is created/);
  r.child.kill("SIGTERM");
  t.equal(await r.exit, 0);
});

t.test("a non-loopback bind with a key starts and requires keys", async (t) => {
  const databaseUrl = await createTestDatabaseUrl(t);
  const token = await createKey(databaseUrl, "default", "producer");
  t.match(token, /^tw_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/, "the token is printed alone on stdout");
  const r = run(["server", "start", "--host", "0.0.0.0", "--port", "0", "--database-url", databaseUrl]);
  const url = (await startedUrl(t, r)).replace("0.0.0.0", "127.0.0.1");
  const denied = await rejection(() => clientsFor(url, undefined).tasks.listTasks({}));
  t.equal(Code[denied.code], "Unauthenticated");
  t.match(denied.rawMessage, /requires an API key: send "Authorization: Bearer <token>"/);
  t.equal((await clientsFor(url, token).tasks.listTasks({})).totalCount, 0n, "the key works");
  t.notMatch(r.output(), DEV_WARNING);
  r.child.kill("SIGTERM");
  t.equal(await r.exit, 0);
});

t.test("--require-auth on loopback with no key: no development mode", async (t) => {
  const databaseUrl = await createTestDatabaseUrl(t);
  const r = run(["server", "start", "--require-auth", "--database-url", databaseUrl, "--port", "0"]);
  const url = await startedUrl(t, r);
  const denied = await rejection(() => clientsFor(url, undefined).tasks.listTasks({}));
  t.equal(Code[denied.code], "Unauthenticated");
  t.match(denied.rawMessage, /taskwire keys create --namespace <name> --role <roles>/, "the message says how to get a key");
  t.notMatch(r.output(), DEV_WARNING);
  r.child.kill("SIGTERM");
  t.equal(await r.exit, 0);
});

t.test("creating the first key while a server runs in development mode makes it require keys", async (t) => {
  const databaseUrl = await createTestDatabaseUrl(t);
  const r = run(["server", "start", "--database-url", databaseUrl, "--port", "0"]);
  const url = await startedUrl(t, r);
  const anonymous = clientsFor(url, undefined);
  await anonymous.tasks.listTasks({});
  // A stream opened without a key in development mode ends once a key exists.
  const stream = (async () => {
    try {
      for await (const message of anonymous.tasks.streamStatus({})) void message;
      return "ended cleanly";
    } catch (error) {
      return String(error);
    }
  })();
  const token = await createKey(databaseUrl, "default", "admin");
  // The NOTIFY of the new key reaches the server within moments; bounded wait, no sleep assertion.
  let code: string | undefined;
  for (let i = 0; i < 100 && code === undefined; i++) {
    code = await anonymous.tasks.listTasks({}).then(
      () => undefined,
      (error: { code: number }) => Code[error.code],
    );
    if (code === undefined) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  t.equal(code, "Unauthenticated", "requests without a key are refused now");
  t.match(await stream, /\[unauthenticated\] development mode ended/, "the keyless stream was ended");
  t.equal((await clientsFor(url, token).tasks.listTasks({})).totalCount, 0n, "the new key works");
  t.match(r.output(), /development mode ended, every request now needs a key/);
  r.child.kill("SIGTERM");
  t.equal(await r.exit, 0);
});

t.test("a fresh install: the CLI bootstraps on the embedded data folder, also while a server runs on it", async (t) => {
  const dataDir = await mkdtemp(path.join(tmpdir(), "taskwire-bootstrap-"));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const cli = (...args: string[]) => execFileAsync(process.execPath, [bin, ...args, "--data-dir", dataDir], { cwd: repo, env: { ...process.env, TASKWIRE_DATABASE_URL: undefined } });
  t.equal((await cli("namespace", "create", "acme")).stdout, "acme\n", "no server yet: the CLI starts the embedded PostgreSQL, migrates and stops it");
  const r = run(["server", "start", "--data-dir", dataDir, "--port", "0"]);
  const url = await startedUrl(t, r);
  const pid = Number((await readFile(path.join(dataDir, "pgdata", "postmaster.pid"), "utf8")).split("\n")[0]);
  const token = (await cli("keys", "create", "--namespace", "acme", "--role", "producer")).stdout.trim();
  t.match(token, /^tw_/, "with the server running, the CLI uses its PostgreSQL");
  t.doesNotThrow(() => process.kill(pid, 0), "and leaves it running");
  t.equal((await fetch(`${url}/healthz`)).status, 200);
  t.equal((await clientsFor(url, token).tasks.listTasks({})).totalCount, 0n, "the key works on the running server");
  t.match((await cli("keys", "list")).stdout, /  acme  producer  active  /);
  r.child.kill("SIGTERM");
  t.equal(await r.exit, 0);
});

t.test("TASKWIRE_REQUIRE_AUTH set to a word it does not know: the server refuses to start, saying which values it takes", async (t) => {
  const failure = await execFileAsync(process.execPath, [bin, "server", "start", "--port", "0"], { cwd: repo, env: { ...process.env, TASKWIRE_REQUIRE_AUTH: "maybe" } }).then(
    () => undefined,
    (error: { code?: number; stderr?: string }) => error,
  );
  t.equal(failure?.code, 2, "exit code 2");
  t.equal(failure?.stderr, 'taskwire: TASKWIRE_REQUIRE_AUTH is "maybe"; allowed, in any case: 1, true, yes, on (on), 0, false, no, off or empty (off)\n', "one line, no stack trace");
});
