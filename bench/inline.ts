/**
 * `npm run bench:inline`: the inline pool's figures (issue #5).
 * - Tiny inline tasks through the whole server path (SubmitBatch -> claim -> thread -> batched
 *   completion), for several pool sizes: tasks/s.
 * - The same tiny tasks on the pool alone (no database), for the pool's own ceiling.
 * - Moving vs copying 1, 16 and 64 MiB payloads to a thread: time per task and the process's peak RSS growth.
 * Prints one JSON line per measurement and a table. Options: --database-url (default: an embedded
 * PostgreSQL in a temporary folder), --tasks, --threads 1,2,4, --queue.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { BytesValueSchema } from "@bufbuild/protobuf/wkt";
import { Command } from "commander";
import { pino } from "pino";
import { Piscina } from "piscina";
import { createApiKey } from "../src/auth/key-admin.js";
import { defaultConfig } from "../src/config.js";
import { InlinePool } from "../src/inline/inline-pool.js";
import { startServer } from "../src/main.js";
import { createClient, TaskState } from "../src/sdk/index.js";
import { packPayload } from "../src/sdk/payload.js";
import wordCount from "../workers/inline/word-count.js";

const options = new Command("bench:inline")
  .option("--database-url <url>", "PostgreSQL to use (default: an embedded one in a temporary folder)", process.env.TASKWIRE_BENCH_DATABASE_URL)
  .option("--tasks <n>", "tiny tasks per measurement", (v) => Number(v), 5_000)
  .option("--threads <list>", "pool sizes to measure", (v) => v.split(",").map(Number), [1, 2, 4])
  .option("--queue <n>", "inline attempts waiting for a thread (the server's --inline-queue)", (v) => Number(v), defaultConfig({}).inlineMaxQueue)
  .parse()
  .opts<{ databaseUrl?: string; tasks: number; threads: number[]; queue: number }>();

const MiB = 1024 * 1024;
const rows: Record<string, unknown>[] = [];
function report(row: Record<string, unknown>) {
  rows.push(row);
  console.log(JSON.stringify(row));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Tiny tasks end to end through a server with `threads` inline threads. */
async function throughServer(threads: number, databaseUrl: string | null, dataDir: string): Promise<void> {
  const server = await startServer(
    { ...defaultConfig({}), port: 0, databaseUrl, dataDir, logLevel: "warn", inlineMaxThreads: threads, inlineMaxQueue: options.queue },
    pino({ level: "warn" }),
  );
  // Through authentication, as in production (and a data folder of earlier runs may hold keys already).
  const { token } = await createApiKey(server.engine.database.pool, { namespace: "default", roles: ["producer", "worker"], expiresInMs: null, description: "bench:inline", actor: "cli" });
  const client = createClient({ baseUrl: server.url, apiKey: token });
  try {
    const jobType = `inline.word-count`;
    await client.registerJobType(wordCount);
    const started = performance.now();
    for (let done = 0; done < options.tasks; done += 1_000) {
      await client.submitBatch(wordCount, Array.from({ length: Math.min(1_000, options.tasks - done) }, (_, i) => ({ text: `tiny task ${i}` })));
    }
    const submitted = performance.now();
    for (;;) {
      const { totalCount } = await client.listTasks({ jobTypes: [jobType], states: [TaskState.SUCCEEDED], pageSize: 1 });
      if (Number(totalCount) >= options.tasks) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const ms = performance.now() - started;
    report({ bench: "inline-server", threads, queue: options.queue, tasks: options.tasks, tasksPerSecond: Math.round(options.tasks / (ms / 1000)), submitMs: Math.round(submitted - started) });
    // The next pool size starts from an empty queue.
    await server.engine.database.db.query("DELETE FROM task WHERE job_type = $1", [jobType]);
  } finally {
    client.close();
    await server.stop();
  }
}

/** The same tiny tasks on the pool alone. */
async function poolOnly(threads: number): Promise<void> {
  const pool = new InlinePool({ dir: "workers", maxThreads: threads, minThreads: threads, maxQueue: options.tasks });
  const input = packPayload("json", { text: "tiny task" });
  const runOne = () => pool.run({ module: "inline/word-count.ts", jobType: "inline.word-count", taskId: "1", attempt: 1, input: { typeUrl: input.typeUrl, value: input.value.slice() }, signal: new AbortController().signal });
  await Promise.all(Array.from({ length: threads * 4 }, runOne)); // warm: threads started, module loaded
  const started = performance.now();
  await Promise.all(Array.from({ length: options.tasks }, runOne));
  const ms = performance.now() - started;
  report({ bench: "inline-pool", threads, tasks: options.tasks, tasksPerSecond: Math.round(options.tasks / (ms / 1000)) });
  await pool.close();
}

/** Hashing a payload on a thread, its bytes moved (transfer list) or copied (structured clone). */
async function transferVsCopy(): Promise<void> {
  const threadFile = fileURLToPath(new URL("../src/inline/thread.ts", import.meta.url));
  const pool = new Piscina({ filename: threadFile, minThreads: 1, maxThreads: 1 });
  const file = path.resolve("workers/inline/hash.ts");
  for (const size of [1, 16, 64]) {
    for (const mode of ["transfer", "copy"] as const) {
      const times: number[] = [];
      let grew = 0;
      for (let run = 0; run < 5; run++) {
        const value = packPayload(BytesValueSchema, { value: new Uint8Array(size * MiB).fill(7) }).value;
        const task = { file, jobType: "inline.hash", taskId: "1", attempt: 1, typeUrl: "type.googleapis.com/google.protobuf.BytesValue", value };
        const before = process.memoryUsage().rss;
        let peak = before;
        const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 1);
        const started = performance.now();
        await pool.run(task, mode === "transfer" ? { transferList: [value.buffer as ArrayBuffer] } : {});
        times.push(performance.now() - started);
        clearInterval(sampler);
        grew = Math.max(grew, Math.max(peak, process.memoryUsage().rss) - before);
      }
      report({ bench: "inline-payload", mode, mib: size, msPerTask: Number(median(times).toFixed(2)), peakRssGrowthMiB: Math.round(grew / MiB) });
    }
  }
  await pool.destroy();
}

const dataDir = await mkdtemp(path.join(os.tmpdir(), "taskwire-bench-inline-"));
try {
  for (const threads of options.threads) await poolOnly(threads);
  for (const threads of options.threads) await throughServer(threads, options.databaseUrl ?? null, dataDir);
  await transferVsCopy();
} finally {
  await rm(dataDir, { recursive: true, force: true });
}
console.error(`\nmachine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? "cpu"}, Node ${process.version}`);
console.table(rows);
