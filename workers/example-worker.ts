/** An example worker: serves the schemaless JSON job "greet" until SIGINT or SIGTERM. */
import { createClient, createWorker, defineJob, NonRetryableError } from "../src/sdk/index.js";

const baseUrl = process.env.TASKWIRE_URL ?? "http://127.0.0.1:8080";
// The token of an API key (`taskwire keys create`); unset: none is sent (development mode).
const apiKey = process.env.TASKWIRE_API_KEY;

/** {name} -> {greeting: "Hello, <name>!"} */
const greet = defineJob({
  name: "greet",
  input: "json",
  output: "json",
  handler: async (input) => {
    const name = (input as { name?: unknown } | null)?.name;
    if (typeof name !== "string") throw new NonRetryableError('input must be {"name": "..."}');
    return { greeting: `Hello, ${name}!` };
  },
});

// A worker may only claim job types the server knows.
const client = createClient({ baseUrl, apiKey });
await client.registerJobType(greet);
client.close();

const worker = createWorker({ baseUrl, apiKey, jobs: [greet], concurrency: 4 });
for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => void worker.stop());
await worker.start();
console.log(`worker ${worker.workerId} serving "greet" at ${baseUrl}`);
