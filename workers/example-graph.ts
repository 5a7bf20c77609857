/** An example graph: counts the words of each argument in parallel, then adds the counts up in a task that depends on them. */
import { createClient, createWorker, defineJob, taskSpec } from "../src/sdk/index.js";

const baseUrl = process.env.TASKWIRE_URL ?? "http://127.0.0.1:8080";
const texts = process.argv.length > 2 ? process.argv.slice(2) : ["to be or not to be", "that is the question"];

/** {text} -> {words} */
const count = defineJob({
  name: "example.count",
  input: "json",
  output: "json",
  handler: async (input) => ({ words: String((input as { text?: unknown }).text ?? "").split(/\s+/).filter(Boolean).length }),
});

/** Runs once every count SUCCEEDED: ctx.parentOutputs(count) holds their outputs, unpacked by count's definition. */
const sum = defineJob({
  name: "example.sum",
  input: "json",
  output: "json",
  handler: async (_input, ctx) => {
    const parts = ctx.parentOutputs(count).map((p) => (p.output as { words: number }).words);
    return { words: parts.reduce((a, b) => a + b, 0), parts };
  },
});

const client = createClient({ baseUrl });
await client.registerJobType(count);
await client.registerJobType(sum);
const worker = createWorker({ baseUrl, jobs: [count, sum], concurrency: 4 });
await worker.start();

// One call, one transaction: a count per text (positions 0 .. n-1), then the sum, which depends on all of them.
const tasks = await client.submitGraph([...texts.map((text) => taskSpec(count, { text })), taskSpec(sum, null, { dependsOn: texts.map((_, i) => i) })]);
console.log(JSON.stringify(await client.handle(tasks.at(-1)!, sum).result({ timeoutMs: 30_000 })));
await worker.stop();
client.close();
