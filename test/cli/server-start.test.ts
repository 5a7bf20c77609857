/** `taskwire server start` as users run it: a real process, real signals, real exit codes. */
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import t from "tap";
import { runCli, startedUrl } from "../helpers/cli-server.js";
import { createEmptyDatabaseUrl, createTestDatabaseUrl } from "../helpers/database.js";

/** `taskwire` with these arguments, not told of the test database (some tests want the embedded one). */
const run = (args: string[]) => runCli(args, { env: { ...process.env, TASKWIRE_DATABASE_URL: undefined } });

t.test("--no-migrate on an empty database fails fast, naming the pending migrations", async (t) => {
  const url = await createEmptyDatabaseUrl(t);
  const r = run(["server", "start", "--database-url", url, "--port", "0", "--no-migrate"]);
  t.equal(await r.exit, 1, "exits non-zero");
  t.match(r.output(), /cannot start: the database schema is not current: \d+ migration\(s\) pending \(0001_initial, /);
});


t.test("with no database configured, the embedded PostgreSQL starts, serves, and stops with the server", async (t) => {
  const dataDir = await mkdtemp(path.join(tmpdir(), "taskwire-embedded-"));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const started = Date.now();
  const r = run(["server", "start", "--data-dir", dataDir, "--port", "0"]);
  const url = await startedUrl(t, r);
  t.ok(Date.now() - started < 20_000, `first start took ${Date.now() - started} ms (< 20 s)`);
  const health = await fetch(`${url}/healthz`);
  t.equal(health.status, 200);
  const registered = await fetch(`${url}/taskwire.v1.JobTypeService/RegisterJobType`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: "embedded.check" }),
  });
  t.equal(registered.status, 200, "the embedded database was migrated and accepts writes");
  const pid = Number((await readFile(path.join(dataDir, "pgdata", "postmaster.pid"), "utf8")).split("\n")[0]);
  r.child.kill("SIGTERM");
  t.equal(await r.exit, 0, "SIGTERM shuts down gracefully with exit 0");
  t.match(r.output(), /"msg":"stopped"/);
  t.notOk(existsSync(path.join(dataDir, "pgdata", "postmaster.pid")), "the embedded PostgreSQL stopped");
  t.throws(() => process.kill(pid, 0), "its process is gone");
});

t.test("a server killed with SIGKILL leaves its embedded PostgreSQL behind; the next start takes over", async (t) => {
  const dataDir = await mkdtemp(path.join(tmpdir(), "taskwire-orphan-"));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const first = run(["server", "start", "--data-dir", dataDir, "--port", "0"]);
  await first.listening;
  const orphan = Number((await readFile(path.join(dataDir, "pgdata", "postmaster.pid"), "utf8")).split("\n")[0]);
  first.child.kill("SIGKILL");
  await first.exit;
  t.doesNotThrow(() => process.kill(orphan, 0), "PostgreSQL outlived the killed server");
  const second = run(["server", "start", "--data-dir", dataDir, "--port", "0"]);
  const url = await startedUrl(t, second);
  t.match(second.output(), /stopping an embedded PostgreSQL left running by an earlier process/);
  t.equal((await fetch(`${url}/healthz`)).status, 200);
  second.child.kill("SIGTERM");
  t.equal(await second.exit, 0);
  t.throws(() => process.kill(orphan, 0), "the orphan is gone");
});

t.test("the started command runs inline job types (its pool threads load TypeScript too)", async (t) => {
  const url = await createTestDatabaseUrl(t);
  const r = run(["server", "start", "--database-url", url, "--port", "0", "--inline-threads", "1"]);
  const base = await startedUrl(t, r);
  const call = async (rpc: string, body: unknown) =>
    (await fetch(`${base}/${rpc}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })).json() as Promise<Record<string, any>>;
  await call("taskwire.v1.JobTypeService/RegisterJobType", { name: "inline.word-count", inlineModule: "inline/word-count.ts" });
  const submitted = await call("taskwire.v1.TaskService/Submit", {
    task: { jobType: "inline.word-count", input: { "@type": "type.googleapis.com/google.protobuf.Value", value: { text: "a b a" } } },
    waitTimeout: "20s",
  });
  t.equal(submitted.task?.state, "TASK_STATE_SUCCEEDED", JSON.stringify(submitted).slice(0, 300));
  t.same(submitted.task?.output?.value, { words: 3, distinct: 2, top: [["a", 2], ["b", 1]] });
  r.child.kill("SIGTERM");
  t.equal(await r.exit, 0);
});
