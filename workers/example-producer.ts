/** An example producer: submits a "greet" task, prints its events as they happen, then its output. */
import { createClient, defineJob, TaskFailedError, TaskState } from "../src/sdk/index.js";

const baseUrl = process.env.TASKWIRE_URL ?? "http://127.0.0.1:8080";
// The token of an API key (`taskwire keys create`); unset: none is sent (development mode).
const apiKey = process.env.TASKWIRE_API_KEY;
const name = process.argv[2] ?? "Grace";

// Producers need only the job's name and payload types; the handler lives in the worker.
const greet = defineJob({ name: "greet", input: "json", output: "json", handler: async () => null });

const client = createClient({ baseUrl, apiKey });
await client.registerJobType(greet);
const task = client.handle(await client.submit(greet, { name }), greet);
console.log(`submitted task ${task.id}`);
// Follow it live in the background (the iteration ends when the task does)...
const stop = new AbortController();
const following = (async () => {
  for await (const event of task.events({ signal: stop.signal })) console.log(`  event ${event.sequence}: ${TaskState[event.state]}`);
})();
// ...and wait at most 30 s for its typed output.
try {
  const output = await task.result({ timeoutMs: 30_000 });
  await following; // it ends with the task's last event
  console.log(JSON.stringify(output));
} catch (error) {
  console.log(error instanceof TaskFailedError ? error.message : `no result: ${String(error)}`);
  process.exitCode = 1;
  stop.abort();
}
client.close();
