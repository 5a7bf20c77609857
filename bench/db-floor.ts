/**
 * The database's share alone: the hot-path statements (submit, claim, complete) called directly,
 * with no server, gRPC or worker, at a chosen batch size and number of concurrent loops. It tells
 * how many tasks per second PostgreSQL itself allows, and what each task costs it, so the full
 * benchmarks can be read against that floor.
 *
 *   node --import tsx bench/db-floor.ts --database-url postgresql://postgres@127.0.0.1:5432/postgres --batch 500 --loops 2
 */
import { randomBytes } from "node:crypto";
import { Command } from "commander";
import pg from "pg";
import type { NewTask } from "../src/core/task.js";
import { openDatabase, prepareSchema } from "../src/store/orm.js";
import { taskClaimAvailable } from "../src/store/sql/task-claim-available.js";
import { taskCompleteBatch } from "../src/store/sql/task-complete-batch.js";
import { taskInsertBatch } from "../src/store/sql/task-insert-batch.js";
import { postgresPids } from "./database.js";
import { cpuBetween, cpuSnapshot } from "./proc-stats.js";

const program = new Command("db-floor")
  .requiredOption("--database-url <url>", "a PostgreSQL server; a fresh database is created on it")
  .option("--n <n>", "tasks", (v) => Number(v), 20_000)
  .option("--batch <b>", "tasks per claim and per completion statement", (v) => Number(v), 500)
  .option("--loops <k>", "concurrent claim/complete loops", (v) => Number(v), 2)
  .option("--keep", "keep the database")
  .option("--setup-sql <sql>", "run this SQL after the migrations, e.g. to try an index change")
  .option("--auto-explain <ms>", "log the plans (with timings, triggers' statements included) of statements slower than this to the PostgreSQL server's log");
program.parse();
const opts = program.opts<{ databaseUrl: string; n: number; batch: number; loops: number; keep?: boolean; autoExplain?: string; setupSql?: string }>();

const admin = new pg.Client({ connectionString: opts.databaseUrl });
await admin.connect();
const dbName = `tw_floor_${randomBytes(4).toString("hex")}`;
await admin.query(`CREATE DATABASE ${dbName}`);
if (opts.autoExplain !== undefined) {
  const ms = Number(opts.autoExplain);
  for (const setting of [
    "session_preload_libraries = 'auto_explain'",
    `auto_explain.log_min_duration = ${ms}`,
    "auto_explain.log_analyze = on",
    "auto_explain.log_nested_statements = on",
  ]) {
    await admin.query(`ALTER DATABASE ${dbName} SET ${setting}`);
  }
}
const url = new URL(opts.databaseUrl);
url.pathname = `/${dbName}`;
const database = await openDatabase(url.toString(), { poolSize: opts.loops + 2 });
await prepareSchema(database, true);
for (const statement of (opts.setupSql ?? "").split(";").map((x) => x.trim()).filter((x) => x !== "")) await database.db.query(statement);
const ns = "default";
const jobType = "floor";
await database.db.query(`INSERT INTO job_type (namespace, name) VALUES ($1, $2)`, [ns, jobType]);
const pids = await postgresPids(url.toString());

function newTask(i: number): NewTask {
  return {
    namespace: ns,
    jobType,
    input: { typeUrl: "type.googleapis.com/google.protobuf.Value", value: Buffer.from(`{"i":${i}}`) },
    priority: 0,
    maxAttempts: 3,
    timeoutMs: null,
    runAt: null,
    backoffBaseMs: 1000,
    backoffCapMs: 600_000,
  };
}

let cpu0 = cpuSnapshot(pids());
let t0 = performance.now();
for (let i = 0; i < opts.n; i += 1000) {
  await taskInsertBatch(database.db, Array.from({ length: Math.min(1000, opts.n - i) }, (_, k) => newTask(i + k)));
}
const submitMs = performance.now() - t0;
const submitCpu = cpuBetween(cpu0, cpuSnapshot(pids()));

await database.db.query("VACUUM ANALYZE task");
cpu0 = cpuSnapshot(pids());
const client0 = process.cpuUsage();
t0 = performance.now();
let done = 0;
let claims = 0;
let claimMs = 0;
let completeMs = 0;
await Promise.all(
  Array.from({ length: opts.loops }, async () => {
    for (;;) {
      let t = performance.now();
      const claimed = await taskClaimAvailable(database.db, { namespace: ns, jobTypes: [jobType], limit: opts.batch, workerId: "w" });
      claimMs += performance.now() - t;
      claims += 1;
      if (claimed.length === 0) return;
      t = performance.now();
      const accepted = await taskCompleteBatch(
        database.db,
        claimed.map((a) => ({ namespace: ns, taskId: a.taskId, attempt: a.attempt, leaseToken: a.leaseToken, output: null })),
      );
      completeMs += performance.now() - t;
      done += accepted.size;
    }
  }),
);
const processMs = performance.now() - t0;
const processCpu = cpuBetween(cpu0, cpuSnapshot(pids()));
const clientCpu = process.cpuUsage(client0);

const result = {
  n: opts.n,
  batch: opts.batch,
  loops: opts.loops,
  done,
  claims,
  submitPerSec: Math.round(opts.n / (submitMs / 1000)),
  submitPgUsPerTask: Math.round((submitCpu * 1e6) / opts.n),
  processPerSec: Math.round(done / (processMs / 1000)),
  processPgUsPerTask: Math.round((processCpu * 1e6) / done),
  claimUsPerTask: Math.round((claimMs * 1000) / done),
  completeUsPerTask: Math.round((completeMs * 1000) / done),
  processClientUsPerTask: Math.round((clientCpu.user + clientCpu.system) / done),
  processPgCpuPct: Math.round((processCpu / (processMs / 1000)) * 100),
};
console.log(JSON.stringify(result));
await database.close();
if (opts.keep !== true) await admin.query(`DROP DATABASE ${dbName}`);
await admin.end();
