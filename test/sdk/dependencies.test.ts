/** Dependencies through the TypeScript SDK: a graph submitted with taskSpec, handlers reading typed parent outputs. */
import { Int64ValueSchema } from "@bufbuild/protobuf/wkt";
import t from "tap";
import { createClient, createWorker, defineJob, TaskState, taskSpec } from "../../src/sdk/index.js";
import { startTestServer } from "../helpers/server.js";

const s = await startTestServer(t, { safetyPollMs: 500 });
const client = createClient({ baseUrl: s.url });
t.teardown(() => client.close());

const count = defineJob({
  name: "sdk.words.count",
  input: "json",
  output: Int64ValueSchema,
  handler: async (input) => ({ value: BigInt(String((input as { text: string }).text).split(/\s+/).filter(Boolean).length) }),
});
const seen: { parents: string[]; single?: string }[] = [];
const total = defineJob({
  name: "sdk.words.total",
  input: "json",
  output: Int64ValueSchema,
  handler: async (_input, ctx) => {
    const counts = ctx.parentOutputs(count);
    let single: string | undefined;
    try {
      ctx.parentOutput(count);
    } catch (error) {
      single = (error as Error).message;
    }
    seen.push({ parents: ctx.parents.map((p) => `${p.jobType}:${p.taskId}`), single });
    return { value: counts.reduce((sum, c) => sum + (c.output?.value ?? 0n), 0n) };
  },
});

t.test("submitGraph: two counts and their total in one call; the total's handler sums its parents' typed outputs", async (t) => {
  await client.registerJobType(count);
  await client.registerJobType(total);
  const worker = createWorker({ baseUrl: s.url, jobs: [count, total], concurrency: 4 });
  t.teardown(() => worker.stop());
  await worker.start();
  const tasks = await client.submitGraph([
    taskSpec(count, { text: "to be or not" }),
    taskSpec(count, { text: "to be" }),
    taskSpec(total, null, { dependsOn: [0, 1] }),
  ]);
  t.same(tasks.map((x) => TaskState[x.state] === "WAITING"), [false, false, true]);
  t.same(tasks[2]!.dependsOn, [tasks[0]!.id, tasks[1]!.id]);
  const sum = await client.handle(tasks[2]!, total).result({ timeoutMs: 15_000 });
  t.equal(sum?.value, 6n, "4 + 2 words");
  t.same(seen.at(-1), {
    parents: [`sdk.words.count:${tasks[0]!.id}`, `sdk.words.count:${tasks[1]!.id}`],
    single: 'this task has 2 dependencies of job type "sdk.words.count", not exactly one; use parentOutputs()',
  });

  // submit with dependsOn naming an existing Task (and its id): parentOutput for a single parent.
  const one = await client.submit(count, { text: "a b c" });
  const after = await client.submit(total, null, { dependsOn: [one] });
  t.same(after.dependsOn, [one.id]);
  t.equal((await client.handle(after, total).result({ timeoutMs: 15_000 }))?.value, 3n);
  t.same(seen.at(-1), { parents: [`sdk.words.count:${one.id}`], single: undefined }, "parentOutput works with exactly one");
});
