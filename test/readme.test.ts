/** The README's examples, run as written (only the address is changed to this test's server). */
import { execFile, spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import t from "tap";
import { DEFAULT_SERVER_LIMITS, LIMIT_SPECS, type ServerLimits } from "../src/core/limits.js";
import { listeningUrl, watchOutput } from "./helpers/cli-server.js";
import { anyJson, jsonAny } from "./helpers/payload.js";
import { startTestServer } from "./helpers/server.js";
import { createTestDatabaseUrl } from "./helpers/database.js";

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

/** A bound as the limits table writes it ("64 KiB", "1 s", "7 days", "10000"), in the spec's unit (bytes, ms or a count). */
function boundValue(text: string): number {
  const [, number, unit] = /^(\d+)(?: (KiB|MiB|s|h|days))?$/.exec(text.trim()) ?? [];
  if (number === undefined) throw new Error(`not a bound: ${JSON.stringify(text)}`);
  const scale = { KiB: 1024, MiB: 1024 * 1024, s: 1_000, h: 3_600_000, days: 86_400_000 }[unit as string] ?? 1;
  return Number(number) * scale;
}

t.test("the limits table names every configurable limit with its default and bounds", async (t) => {
  const section = readme.slice(readme.indexOf("Limits an operator sets"), readme.indexOf("Per-replica limits multiply"));
  const rows = section.split("\n").filter((line) => line.startsWith("| `--"));
  t.ok(rows.length > 0, "the table was found");
  const documented = new Map<string, { value: number; min: number; max: number }>();
  for (const row of rows) {
    const [flagsCell, defaultsCell, boundsCell] = row.split(" | ").map((cell) => cell.replace(/^\| /, ""));
    const flags = [...flagsCell!.matchAll(/`(--[a-z-]+)`/g)].map((m) => m[1]!);
    const defaults = [...defaultsCell!.matchAll(/`(\d+)`/g)].map((m) => Number(m[1]));
    t.equal(defaults.length, flags.length, `${flags.join(", ")}: one default per flag (${defaultsCell})`);
    const [min, max] = boundsCell!.replace(/,.*$/, "").replace(/ each$/, "").split(" to ").map(boundValue);
    flags.forEach((flag, i) => documented.set(flag, { value: defaults[i]!, min: min!, max: max! }));
  }
  const specs = Object.entries(LIMIT_SPECS) as [keyof ServerLimits, (typeof LIMIT_SPECS)[keyof ServerLimits]][];
  t.same([...documented.keys()].sort(), specs.map(([, spec]) => spec.flag).sort(), "the same flags as LIMIT_SPECS, no more, no fewer");
  for (const [name, spec] of specs) {
    t.same(documented.get(spec.flag), { value: DEFAULT_SERVER_LIMITS[name], min: spec.min, max: spec.max }, `${spec.flag}: default and bounds as in src/core/limits.ts`);
  }
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

t.test("the keys example, on a server of its own: namespace, key, an authenticated curl, list, revoke", async (t) => {
  // Its own database: creating a key ends development mode, which the examples above rely on.
  const auth = await startTestServer(t);
  const [block] = bashBlocks("## Namespaces, API keys and roles");
  const script = local(block!).replaceAll(s.url, auth.url);
  // The block as written, then (for this test) the token it made, on stderr.
  const { stdout, stderr } = await run("bash", ["-e", "-c", `${script}\nprintf 'TOKEN=%s\\n' "$TOKEN" >&2`], { cwd: repo, env: { ...process.env, TASKWIRE_DATABASE_URL: auth.databaseUrl } });
  // curl prints no newline after its JSON.
  const parts = /^acme\n(\{.*?\})([0-9a-f]{16}  acme  .*)\n([0-9a-f]{16} revoked at .*)\n((?:.*\n){3})$/s.exec(stdout);
  t.ok(parts, `namespace create, curl, keys list, keys revoke and audit list printed in order: ${stdout}`);
  t.same(JSON.parse(parts?.[1] ?? "null"), {}, "curl with the key lists acme's tasks: none (JSON leaves out empty fields)");
  t.match(parts?.[2], /^[0-9a-f]{16}  acme  producer,worker,watcher  active  created .* by cli  expires .*  last used /, "keys list shows the key, not its secret");
  t.notMatch(stdout.slice(stdout.indexOf("}")), /_[A-Za-z0-9_-]{43}/, "no token in the listing");
  t.match(stderr, /created API key [0-9a-f]{16} in namespace acme with roles producer,worker,watcher, expiring /);
  const keyId = parts?.[3]?.slice(0, 16);
  const audit = (parts?.[4] ?? "").trimEnd().split("\n").map((line) => line.replace(/^\d{4}-\d\d-\d\dT[\d:.]+Z  /, ""));
  t.same(audit, [`acme  api_key_revoked  ${keyId}  by cli`, `acme  api_key_created  ${keyId}  by cli`, "acme  namespace_created  acme  by cli"], "audit list: the three operations, newest first, by the CLI");
  const [row] = await auth.server.engine.database.db.query<{ revoked: boolean }>("SELECT revoked_at IS NOT NULL AS revoked FROM api_key");
  t.equal(row?.revoked, true, "the key is revoked in the database");
  const token = /TOKEN=(tw_\S+)/.exec(stderr)?.[1];
  t.ok(token, "the token was captured");
  const revoked = JSON.parse((await run("bash", ["-c", `curl -s -X POST ${auth.url}/taskwire.v1.TaskService/ListTasks -H 'content-type: application/json' -H 'Authorization: Bearer ${token}' -d '{}'`])).stdout);
  t.match(revoked, { code: "unauthenticated", message: /^API key [0-9a-f]{16} was revoked at / }, "the revoked key is refused");
});

t.test("the TLS example: a certificate, a TLS server, curl over https", async (t) => {
  const [openssl, start, curl] = commands(bashBlocks("## TLS")[0]!);
  const dir = await mkdtemp(path.join(tmpdir(), "taskwire-readme-tls-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await run("bash", ["-c", openssl!], { cwd: dir });
  const databaseUrl = await createTestDatabaseUrl(t);
  const child = spawn("bash", ["-c", `${start!.replace("node bin/taskwire.js", `node ${path.join(repo, "bin/taskwire.js")}`)} --port 0`], { cwd: dir, env: { ...process.env, TASKWIRE_DATABASE_URL: databaseUrl }, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  // bash may run the server as a child of its own: kill the whole group.
  t.teardown(() => process.kill(-child.pid!, "SIGKILL"));
  const url = await listeningUrl(watchOutput(child));
  const health = JSON.parse((await run("bash", ["-c", curl!.replace("https://127.0.0.1:8080", url)], { cwd: dir })).stdout);
  t.same(health, { status: "ok" }, "curl trusts the certificate and gets /healthz over TLS");
});

t.test("the dependencies examples: a batch whose third task waits for the first two, then the graph example", async (t) => {
  const [batch, list] = commands(bashBlocks("## Dependencies")[0]!);
  t.ok(batch && list, "two curl commands");
  await s.jobTypes.registerJobType({ name: "greet" });
  const submitted = JSON.parse((await run("bash", ["-c", local(batch!)])).stdout) as { tasks: { id: string; state: string; dependsOn?: string[]; unmetDependencies?: number }[] };
  const [ada, grace, both] = submitted.tasks;
  t.match(both, { state: "TASK_STATE_WAITING", dependsOn: [ada!.id, grace!.id], unmetDependencies: 2 }, "as the README says");
  const listed = JSON.parse((await run("bash", ["-c", local(list!)])).stdout) as { tasks: { id: string; state: string; dependsOn: string[] }[] };
  t.ok(listed.tasks.some((x) => x.id === both!.id && x.state === "TASK_STATE_WAITING" && x.dependsOn.length === 2), "ListTasks shows it waiting");
  // A worker serving greet (this test's unary calls) runs whatever is ready until the third task comes.
  let parents: { taskId: string; output: unknown }[] = [];
  for (let round = 0; round < 3 && parents.length === 0; round++) {
    for (const a of (await s.workers.claimTasks({ workerId: "readme-deps", jobTypes: ["greet"], maxTasks: 100 })).assignments) {
      if (a.taskId === both!.id) parents = a.parents.map((p) => ({ taskId: p.taskId, output: anyJson(p.output) }));
      const name = (anyJson(a.input) as { name: string }).name;
      await s.workers.completeTask({ completion: { taskId: a.taskId, attempt: a.attempt, leaseToken: a.leaseToken, output: jsonAny({ greeting: `Hello, ${name}!` }) } });
    }
  }
  t.same(parents, [{ taskId: ada!.id, output: { greeting: "Hello, Ada!" } }, { taskId: grace!.id, output: { greeting: "Hello, Grace!" } }], "its assignment carries both greetings in parents");

  const [graphCommand] = commands(bashBlocks("## Dependencies")[1]!);
  t.equal(graphCommand, `node --import tsx workers/example-graph.ts "to be or not to be" "that is the question"`);
  const shown = readme.slice(readme.indexOf("## Dependencies")).match(/```ts\n([\s\S]*?)```/)![1]!;
  t.ok((await readFile(path.join(repo, "workers/example-graph.ts"), "utf8")).includes(shown.trim()), "the README shows example-graph.ts's sum job as it is");
  const graph = await run(process.execPath, ["--import", "tsx", "workers/example-graph.ts", "to be or not to be", "that is the question"], { cwd: repo, env: { ...process.env, TASKWIRE_URL: s.url } });
  t.equal(graph.stdout.trim(), '{"words":10,"parts":[6,4]}', "it prints what the README says");
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
