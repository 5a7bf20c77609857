/** The README's examples, run as written (only the address is changed to this test's server). */
import { execFile, spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import t from "tap";
import { anyJson, jsonAny } from "./helpers/payload.js";
import { startTestServer } from "./helpers/server.js";

const run = promisify(execFile);
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const readme = await readFile(path.join(repo, "README.md"), "utf8");
const s = await startTestServer(t, { safetyPollMs: 500, inline: { dir: "workers", maxThreads: 1 } });

/** The fenced bash blocks of the section that starts with `heading`. */
function bashBlocks(heading: string): string[] {
  const start = readme.indexOf(heading);
  const section = readme.slice(start, readme.indexOf("\n## ", start + heading.length));
  return [...section.matchAll(/```bash\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

/** Commands of a block, with backslash-continued lines joined. */
function commands(block: string): string[] {
  return block.replace(/\\\n\s*/g, " ").split("\n").map((line) => line.trim()).filter((line) => line !== "" && !line.startsWith("#"));
}

const local = (command: string) => command.replaceAll("http://127.0.0.1:8080", s.url);

t.test("package.json has the two set-up commands the README names", async (t) => {
  const pkg = JSON.parse(await readFile(path.join(repo, "package.json"), "utf8")) as { scripts: Record<string, string> };
  t.match(readme, /npm ci && npm start/);
  t.match(pkg.scripts.start, /server start/);
  t.equal(pkg.scripts.test, "tap");
});

t.test("the curl example registers, submits and reads a task", async (t) => {
  const [block] = bashBlocks("## Try it with curl");
  const [register, submit, get] = commands(block!);
  t.ok(register && submit && get, "three curl commands");
  const registered = JSON.parse((await run("bash", ["-c", local(register!)])).stdout);
  t.match(registered, { jobType: { name: "greet", defaultMaxAttempts: 5 } });
  const submitted = JSON.parse((await run("bash", ["-c", local(submit!)])).stdout);
  t.match(submitted, { task: { id: "1", jobType: "greet", state: "TASK_STATE_PENDING" } });
  const got = JSON.parse((await run("bash", ["-c", local(get!)])).stdout);
  t.match(got, { task: { id: "1", state: "TASK_STATE_PENDING", queuePosition: "0", input: { value: { name: "Ada" } } } });
});

t.test("the example worker completes the curl task; the example producer prints its result", async (t) => {
  const [workerCommand] = commands(bashBlocks("## A worker in TypeScript")[0]!);
  t.equal(workerCommand, "node --import tsx workers/example-worker.ts");
  const worker = spawn(process.execPath, ["--import", "tsx", "workers/example-worker.ts"], { cwd: repo, env: { ...process.env, TASKWIRE_URL: s.url }, stdio: ["ignore", "pipe", "pipe"] });
  const exited = new Promise<number | null>((resolve) => worker.once("exit", resolve));
  t.teardown(() => void worker.kill("SIGKILL"));
  let task = (await s.tasks.getTask({ id: "1" })).task!;
  for (let i = 0; i < 200 && task.state !== 4; i++) {
    await new Promise((r) => setTimeout(r, 50));
    task = (await s.tasks.getTask({ id: "1" })).task!;
  }
  t.equal(task.state, 4, "SUCCEEDED");
  t.same(anyJson(task.output), { greeting: "Hello, Ada!" });

  const [producerCommand] = commands(bashBlocks("## A worker in TypeScript")[1]!);
  t.equal(producerCommand, "node --import tsx workers/example-producer.ts Grace");
  const producer = await run(process.execPath, ["--import", "tsx", "workers/example-producer.ts", "Grace"], { cwd: repo, env: { ...process.env, TASKWIRE_URL: s.url } });
  t.match(producer.stdout, /event \d+: RUNNING\n.*event \d+: SUCCEEDED\n\{"greeting":"Hello, Grace!"\}/s, "events as they happen, then the typed result");

  worker.kill("SIGTERM");
  t.equal(await exited, 0, "the worker stops cleanly on SIGTERM");
});

/** Runs a long-lived command until its output matches, then stops it. */
async function outputOf(command: string, until: RegExp, act: () => Promise<unknown>): Promise<string> {
  const child = spawn("bash", ["-c", command], { cwd: repo, stdio: ["ignore", "pipe", "pipe"], detached: true });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString("latin1")));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString("latin1")));
  try {
    // The command may take a while to subscribe (buf compiles the protos first): act every second until the output shows it.
    const deadline = Date.now() + 20_000;
    while (!until.test(output)) {
      if (Date.now() > deadline) throw new Error(`no match for ${until} in: ${output}`);
      await act();
      for (let i = 0; i < 20 && !until.test(output); i++) await new Promise((r) => setTimeout(r, 50));
    }
    return output;
  } finally {
    process.kill(-child.pid!, "SIGKILL");
  }
}

t.test("the live-following examples: curl and buf curl streams, and WaitTask", async (t) => {
  const [stream, bufCurl, waitTask] = commands(bashBlocks("## Follow tasks live")[0]!);
  t.ok(stream && bufCurl && waitTask, "three commands");
  await s.jobTypes.registerJobType({ name: "greet" });
  const submit = () => s.tasks.submit({ task: { jobType: "greet", input: jsonAny({ name: "Lin" }) } });
  const raw = await outputOf(local(stream!), /"kind":"TASK_EVENT_KIND_CREATED"/, submit);
  t.match(raw, /\{"event":\{"sequence":"\d+","taskId":"\d+","jobType":"greet","kind":"TASK_EVENT_KIND_CREATED"/, "curl receives the framed JSON events");
  const pretty = await outputOf(local(bufCurl!), /"kind": "TASK_EVENT_KIND_CREATED"/, submit);
  t.match(pretty, /\{\n\s+"event": \{\n\s+"sequence": "\d+",/, "buf curl prints one JSON message per event");
  const waited = JSON.parse((await run("bash", ["-c", local(waitTask!).replace('"30s"', '"1s"')])).stdout) as { code?: string; task?: { state: string } };
  t.ok(waited.task?.state === "TASK_STATE_SUCCEEDED" || waited.code === "deadline_exceeded", `WaitTask answers with the task or deadline_exceeded (${JSON.stringify(waited).slice(0, 80)})`);
});

t.test("the inline example: the hash module as shown, and the curl calls that run word-count on the pool", async (t) => {
  const shown = readme.slice(readme.indexOf("## Inline job types")).match(/```ts\n([\s\S]*?)```/)![1]!;
  const module = await readFile(path.join(repo, "workers/inline/hash.ts"), "utf8");
  t.ok(module.includes(shown.trim()), "the README shows workers/inline/hash.ts's definition as it is");
  const [register, submit] = commands(bashBlocks("## Inline job types")[0]!);
  t.match(JSON.parse((await run("bash", ["-c", local(register!)])).stdout), { jobType: { name: "inline.word-count", inlineModule: "inline/word-count.ts" } });
  const submitted = JSON.parse((await run("bash", ["-c", local(submit!)])).stdout) as { task: { state: string; output: { value: unknown } } };
  t.equal(submitted.task.state, "TASK_STATE_SUCCEEDED");
  t.same(submitted.task.output.value, { words: 6, distinct: 4, top: [["be", 2], ["to", 2], ["not", 1]] }, "the output the README quotes");
});

t.test("the idempotency and schedule examples: one task for the key, then a schedule created, paused and deleted", async (t) => {
  const [first, second, create, pause, remove] = [...commands(bashBlocks("## Idempotency keys and schedules")[0]!), ...commands(bashBlocks("## Idempotency keys and schedules")[1]!)];
  t.ok(first && second && create && pause && remove, "five curl commands");
  await s.jobTypes.registerJobType({ name: "greet" });
  const a = JSON.parse((await run("bash", ["-c", local(first!)])).stdout) as { task: { id: string; idempotencyKey: string; deduplicated?: boolean } };
  const b = JSON.parse((await run("bash", ["-c", local(second!)])).stdout) as { task: { id: string; deduplicated?: boolean; input: { value: unknown } } };
  t.equal(a.task.idempotencyKey, "welcome-ada");
  t.equal(a.task.deduplicated, undefined, "the first answer created the task (false is omitted in JSON)");
  t.equal(b.task.id, a.task.id, "the second names the same task");
  t.equal(b.task.deduplicated, true, 'and says "deduplicated": true');
  t.same(b.task.input.value, { name: "Ada" }, "the one greeting Ada, as the README says");

  const created = JSON.parse((await run("bash", ["-c", local(create!)])).stdout) as { schedule: { name: string; timeZone: string; missedFirePolicy: string; nextFireTime: string } };
  t.match(created.schedule, { name: "morning-greeting", timeZone: "Europe/Berlin", missedFirePolicy: "MISSED_FIRE_POLICY_RUN_ONCE" });
  const next = new Date(created.schedule.nextFireTime);
  const local9 = new Intl.DateTimeFormat("en-GB", { timeZone: "Europe/Berlin", weekday: "short", hour: "2-digit", minute: "2-digit" }).format(next);
  t.match(local9, /^(Mon|Tue|Wed|Thu|Fri) 09:00$/, `the next fire is a weekday at 09:00 in Berlin (${local9})`);
  const paused = JSON.parse((await run("bash", ["-c", local(pause!)])).stdout) as { schedule: { paused: boolean } };
  t.equal(paused.schedule.paused, true);
  t.same(JSON.parse((await run("bash", ["-c", local(remove!)])).stdout), {}, "deleted");
  const gone = JSON.parse((await run("bash", ["-c", local(remove!)])).stdout) as { code: string };
  t.equal(gone.code, "not_found", "and gone");
});

t.test("the limits example: the job type shows its limits, and a claim for 10 gets one task per customer", async (t) => {
  const [register, submit, claim] = commands(bashBlocks("## Rate and concurrency limits")[0]!);
  t.ok(register && submit && claim, "three curl commands");
  const registered = JSON.parse((await run("bash", ["-c", local(register!)])).stdout);
  t.match(registered, { jobType: { name: "crm.sync", maxRunningPerKey: 1, rateLimit: { maxStarts: 30, window: "60s" } } });
  const submitted = JSON.parse((await run("bash", ["-c", local(submit!)])).stdout) as { tasks: { concurrencyKey: string; state: string }[] };
  t.same(submitted.tasks.map((x) => [x.concurrencyKey, x.state]), [["customer-42", "TASK_STATE_PENDING"], ["customer-42", "TASK_STATE_PENDING"], ["customer-7", "TASK_STATE_PENDING"]]);
  const claimed = JSON.parse((await run("bash", ["-c", local(claim!)])).stdout) as { assignments: { taskId: string; input: { value: unknown } }[] };
  t.equal(claimed.assignments.length, 2, "two assignments, as the README says");
  const keys = await Promise.all(claimed.assignments.map(async (x) => (await s.tasks.getTask({ id: x.taskId })).task!.concurrencyKey));
  t.same(keys.sort(), ["customer-42", "customer-7"], "one per customer");
  t.same(claimed.assignments.map((x) => x.input.value).find((v) => (v as { step: number }).step === 2), undefined, "customer-42's second task waits");
});
