/** An example producer: submits a "greet" task and prints its output once a worker has run it. */
import { createClient, defineJob, TaskState, taskOutput } from "../src/sdk/index.js";

const baseUrl = process.env.TASKWIRE_URL ?? "http://127.0.0.1:8080";
const name = process.argv[2] ?? "Grace";

// Producers need only the job's name and payload types; the handler lives in the worker.
const greet = defineJob({ name: "greet", input: "json", output: "json", handler: async () => null });

const client = createClient({ baseUrl });
await client.registerJobType(greet);
const task = await client.submit(greet, { name });
console.log(`submitted task ${task.id}`);
// Polls for the result; the status stream arrives with a later release.
for (let i = 0; i < 100; i++) {
  const current = await client.getTask(task.id);
  if (current.state === TaskState.SUCCEEDED) {
    console.log(JSON.stringify(taskOutput(current, greet)));
    break;
  }
  if (current.state === TaskState.DEAD || current.state === TaskState.CANCELLED) {
    console.log(`task ended ${TaskState[current.state]}: ${current.lastError}`);
    process.exitCode = 1;
    break;
  }
  await new Promise((resolve) => setTimeout(resolve, 100));
}
client.close();
