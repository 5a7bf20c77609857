/**
 * A database outage for real: this file's own PostgreSQL is stopped while a producer submits, a
 * worker runs tasks and a watcher follows every event, all through a real server process. During
 * the outage every RPC answers UNAVAILABLE saying the database is unavailable (also once the key
 * cache has expired and authentication itself needs the database, and on AdminService), the
 * worker's and the watcher's streams end with a resumable UNAVAILABLE, /healthz says 503 and the
 * server keeps running. Once PostgreSQL is back, everything recovers without a restart: submits
 * are accepted again, the worker reconnects and finishes the work, the watcher resumes from its
 * cursor without a gap, and every acknowledged task exists and succeeds.
 */
import { execFile } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Code, ConnectError } from "@connectrpc/connect";
import t from "tap";
import { createClient, createWorker, defineJob, TaskState } from "../../src/sdk/index.js";
import { runCli, startedUrl } from "../helpers/cli-server.js";
import { startPrivatePostgres } from "../helpers/private-postgres.js";
import { clientsFor } from "../helpers/server.js";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const bin = path.join(repo, "bin/taskwire.js");
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const pg = await startPrivatePostgres(t);
// Admin too, for the AdminService call during the outage.
const { stdout } = await promisify(execFile)(process.execPath, [bin, "keys", "create", "--namespace", "default", "--role", "producer,worker,watcher,admin", "--database-url", pg.url], { cwd: repo });
const token = stdout.trim();

// A verified key is trusted for 1 s: the outage lasts longer, so authentication itself needs the database.
const KEY_CACHE_MS = 1_000;
const server = runCli(["server", "start", "--database-url", pg.url, "--port", "0", "--inline-threads", "0", "--key-cache-ms", String(KEY_CACHE_MS)]);
let exitCode: number | null | undefined;
void server.exit.then((code) => (exitCode = code));
const url = await startedUrl(t, server);

const job = defineJob({ name: "outage.work", input: "json", output: "json", handler: async (input) => ({ done: input }) });
const client = createClient({ baseUrl: url, apiKey: token });
t.teardown(() => client.close());
// A short lease: the worker heartbeats every second, so its stream notices the outage at once.
await client.registerJobType({ name: job.name, leaseDurationMs: 3_000 });

/** How the worker's Claim streams ended, and its failed reconnects (the SDK logs those), with when. */
const claimEnds: { at: number; error: ConnectError | undefined }[] = [];
const reconnectFailures: { at: number; error: ConnectError }[] = [];
const connects: number[] = [];
const logged = (fields: unknown, message?: string) => {
  const error = (fields as { err?: unknown } | undefined)?.err;
  if (error !== undefined && /claim stream failed; reconnecting/.test(message ?? "")) reconnectFailures.push({ at: Date.now(), error: ConnectError.from(error) });
};
const quiet = { info() {}, warn: logged, error: logged };
const worker = createWorker({ baseUrl: url, apiKey: token, jobs: [job], concurrency: 4, logger: quiet, reconnect: { initialDelayMs: 100, maxDelayMs: 1_000 } });
worker.on("disconnected", ({ error }) => claimEnds.push({ at: Date.now(), error: error === undefined ? undefined : ConnectError.from(error) }));
worker.on("connected", () => connects.push(Date.now()));
await worker.start();
t.teardown(() => worker.stop({ graceMs: 0 }));

// The producer: one Submit every 20 ms; what was acknowledged, and every error with when it came.
const acknowledged: string[] = [];
const submitErrors: ConnectError[] = [];
const submitErrorTimes: number[] = [];
let producing = true;
const producer = (async () => {
  for (let i = 0; producing; i++) {
    try {
      acknowledged.push((await client.submit(job, { i })).id);
    } catch (error) {
      submitErrors.push(ConnectError.from(error));
      submitErrorTimes.push(Date.now());
    }
    await sleep(20);
  }
})();

// The watcher: every event of the namespace, resuming from its cursor whenever its stream ends.
const raw = clientsFor(url, token);
const seqs: bigint[] = [];
const streamEnds: ConnectError[] = [];
let watching = true;
let cursor: bigint | undefined;
const watchStop = new AbortController();
const watcher = (async () => {
  while (watching) {
    try {
      for await (const m of raw.tasks.streamStatus(cursor === undefined ? {} : { since: cursor }, { signal: watchStop.signal })) {
        if (m.message.case === "event") seqs.push(m.message.value.sequence);
        cursor = m.cursor;
      }
    } catch (error) {
      if (!watching) return;
      streamEnds.push(ConnectError.from(error));
      await sleep(200);
    }
  }
})();

const UNAVAILABLE = /^the database is unavailable; the request was not carried out, retry later$/;
/** Each error that is not UNAVAILABLE with the database message, described (empty: all are). */
const notUnavailable = (errors: readonly (ConnectError | undefined)[]) =>
  errors.filter((e) => e === undefined || e.code !== Code.Unavailable || !UNAVAILABLE.test(e.rawMessage)).map((e) => (e === undefined ? "ended without an error" : `${Code[e.code]}: ${e.rawMessage}`));
let stoppedAt = 0;
let restartingAt = 0;

const healthz = () => fetch(`${url}/healthz`).then((r) => r.status, () => 0);
const codeOf = (call: () => Promise<unknown>) => call().then(() => "OK", (error: unknown) => `${Code[ConnectError.from(error).code]}: ${ConnectError.from(error).rawMessage}`);

t.test("before: tasks flow", async (t) => {
  for (let i = 0; i < 100 && acknowledged.length < 20; i++) await sleep(50);
  t.ok(acknowledged.length >= 20, `${acknowledged.length} tasks acknowledged`);
  t.equal(submitErrors.length, 0);
  t.equal(await healthz(), 200);
});

t.test("during the outage: UNAVAILABLE with a clear message, resumable stream ends, the server stays up", async (t) => {
  const errorsBefore = submitErrors.length;
  const endsBefore = streamEnds.length;
  const claimEndsBefore = claimEnds.length;
  await pg.stop("fast");
  stoppedAt = Date.now();
  // Read after the stop: submits go on being acknowledged until PostgreSQL has the signal.
  const ackedBefore = acknowledged.length;
  for (let i = 0; i < 100 && submitErrors.length < errorsBefore + 20; i++) await sleep(50);
  const during = submitErrors.slice(errorsBefore);
  t.ok(during.length >= 20, `${during.length} submits refused`);
  t.same(notUnavailable(during), [], "every refusal so far is UNAVAILABLE, saying the database is unavailable");
  t.ok(acknowledged.length <= ackedBefore + 1, "nothing is acknowledged while the database is down (one may have been in flight)");
  t.match(await codeOf(() => raw.tasks.getTask({ id: acknowledged[0]! })), /^Unavailable: the database is unavailable/);
  t.match(await codeOf(() => raw.tasks.listTasks({})), /^Unavailable: /);
  t.match(await codeOf(() => raw.admin.listApiKeys({})), /^Unavailable: the database is unavailable/, "AdminService too: a read");
  t.match(await codeOf(() => raw.admin.createNamespace({ name: "during-outage" })), /^Unavailable: the database is unavailable/, "and a write (in a transaction)");
  for (let i = 0; i < 100 && streamEnds.length === endsBefore; i++) await sleep(50);
  const end = streamEnds[endsBefore];
  t.equal(end === undefined ? undefined : Code[end.code], "Unavailable", "the watcher's stream ended with UNAVAILABLE");
  t.match(end?.rawMessage ?? "", /resume with since = the last cursor received|the database is unavailable/, `the message says how to go on: ${end?.rawMessage}`);
  let health = await healthz();
  for (let i = 0; i < 40 && health !== 503; i++) health = await sleep(100).then(healthz); // the probe caches its answer for a second
  t.equal(health, 503, "/healthz says the database is unavailable");
  // The worker heartbeats every second: its stream ends with the outage, and it keeps trying to reconnect.
  for (let i = 0; i < 100 && claimEnds.length === claimEndsBefore; i++) await sleep(50);
  const claimEnd = claimEnds[claimEndsBefore];
  t.same(notUnavailable([claimEnd?.error]), [], "the worker's Claim stream ended UNAVAILABLE (resumable: the SDK reconnects)");
  // Past the key cache: each request now has to read its key, and the database is still down.
  while (Date.now() < stoppedAt + KEY_CACHE_MS + 2_500) await sleep(100);
  const failedReconnects = reconnectFailures.filter((f) => f.at > stoppedAt);
  // The first is the stream that ended; the others are reconnects the server refused.
  t.ok(failedReconnects.length >= 2, `the worker tried to reconnect (${failedReconnects.length - 1} times)`);
  t.same(notUnavailable(failedReconnects.map((f) => f.error)), [], "and each attempt was answered UNAVAILABLE, so it goes on trying");
  const afterCache = submitErrorTimes.filter((at) => at > stoppedAt + KEY_CACHE_MS + 500).length;
  t.ok(afterCache >= 10, `${afterCache} submits were refused after the key cache expired`);
  t.same(notUnavailable(submitErrors.slice(errorsBefore)), [], "every submit refused during the outage, before and after the cache expired, is UNAVAILABLE");
  t.equal(exitCode, undefined, "the server process is still running");
  t.notMatch(server.output(), /"level":60|internal error/, "no fatal log, no INTERNAL");
});

t.test("after: everything recovers without a restart, and no acknowledged task is lost", async (t) => {
  // Taken before the start: pg_ctl returns only after it has seen the server ready, by which time
  // the worker's next reconnect may already have been welcomed.
  restartingAt = Date.now();
  await pg.start();
  const errorsAtRestart = submitErrors.length;
  const ackedAtRestart = acknowledged.length;
  for (let i = 0; i < 400 && acknowledged.length < ackedAtRestart + 20; i++) await sleep(50);
  t.ok(acknowledged.length >= ackedAtRestart + 20, "submits are acknowledged again");
  t.ok(submitErrors.length - errorsAtRestart < 200, "and stopped failing");
  let health = await healthz();
  for (let i = 0; i < 40 && health !== 200; i++) health = await sleep(100).then(healthz);
  t.equal(health, 200, "/healthz recovers");
  producing = false;
  await producer;
  // Every acknowledged task exists and succeeds (the worker reconnected by itself).
  const pending = new Set(acknowledged);
  for (let i = 0; i < 600 && pending.size > 0; i++) {
    const page = await raw.tasks.listTasks({ states: [TaskState.SUCCEEDED], pageSize: 1_000 }).catch(() => undefined);
    if (page !== undefined) {
      let token2 = page.nextPageToken;
      for (const task of page.tasks) pending.delete(task.id);
      while (token2 !== "") {
        const next = await raw.tasks.listTasks({ states: [TaskState.SUCCEEDED], pageSize: 1_000, pageToken: token2 });
        for (const task of next.tasks) pending.delete(task.id);
        token2 = next.nextPageToken;
      }
    }
    if (pending.size > 0) await sleep(100);
  }
  t.equal(pending.size, 0, `all ${acknowledged.length} acknowledged tasks SUCCEEDED (missing: ${[...pending].slice(0, 5).join(", ")})`);
  t.same(connects.filter((at) => at > stoppedAt && at < restartingAt), [], "the worker was never welcomed while the database was down");
  t.ok(connects.some((at) => at > restartingAt), "the worker reconnected by itself once the database came back");
  t.same(notUnavailable(submitErrors), [], `all ${submitErrors.length} submit errors of the run (during the outage and while the pool reconnected) were UNAVAILABLE`);
  t.same(notUnavailable(reconnectFailures.map((f) => f.error)), [], "so were all of the worker's failed (re)connects");
  const total = (await raw.tasks.listTasks({})).totalCount;
  t.equal(Number(total), acknowledged.length, "no task beyond the acknowledged ones, none lost");
  // The watcher resumed after its stream ended, from its cursor, without a gap.
  for (let i = 0; i < 200 && (seqs.length === 0 || seqs.at(-1)! < (await lastSeq())); i++) await sleep(50);
  watching = false;
  watchStop.abort();
  await watcher;
  const gaps = seqs.filter((seq, i) => i > 0 && seq !== seqs[i - 1]! + 1n);
  t.same(gaps, [], `the watcher saw ${seqs.length} events in order without a gap across ${streamEnds.length} reconnects`);
  t.ok(streamEnds.length >= 1);
  t.equal(exitCode, undefined, "the same server process throughout");
  t.notMatch(server.output(), /"level":60|internal error/, "no fatal log, no INTERNAL, from start to end");
  server.child.kill("SIGTERM");
  await server.exit;
  t.equal(exitCode, 0, "and it shuts down cleanly");
});

/** The namespace's latest event sequence: the cursor of a fresh snapshot (of task 1, which exists). */
async function lastSeq(): Promise<bigint> {
  for await (const m of raw.tasks.streamStatus({ taskIds: [acknowledged[0]!] })) return m.cursor;
  return 0n;
}
