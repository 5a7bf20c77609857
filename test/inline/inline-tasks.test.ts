/**
 * Inline job types on the server's Piscina pool, with real threads: success through the claim and
 * lease path, timeouts of a loop that never yields, cancellation, crashes of every kind, and a pool
 * that is full (it stops claiming instead of buffering).
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import t from "tap";
import { AttemptOutcome, TaskState, type Task } from "../../src/gen/taskwire/v1/task_pb.js";
import { anyJson, jsonAny } from "../helpers/payload.js";
import { rejection } from "../helpers/rejection.js";
import { startTestServer } from "../helpers/server.js";

const s = await startTestServer(t, { inline: { dir: "test/fixtures/inline", maxThreads: 2, maxQueue: 1, memoryMb: 64 }, sweepIntervalMs: 100 });
const inline = s.server.engine.inline!;

async function register(name: string, module: string, extra: Record<string, unknown> = {}) {
  await s.jobTypes.registerJobType({ name, inlineModule: module, defaultRetry: { backoffBase: durationFromMs(0), backoffCap: durationFromMs(0) }, ...extra });
}
const submit = async (jobType: string, input: unknown, extra: Record<string, unknown> = {}) =>
  (await s.tasks.submit({ task: { jobType, input: jsonAny(input as never), ...extra } })).task!;
const finished = async (task: Task) => (await s.tasks.waitTask({ id: task.id, timeout: durationFromMs(30_000) })).task!;

await register("t.work", "work.ts");

t.test("an inline handler gets its dependencies' outputs (ctx.parents, typed by their job definition)", async (t) => {
  await register("t.parents", "parents.ts");
  const { tasks } = await s.tasks.submitBatch({
    tasks: [{ jobType: "t.work", input: jsonAny({ ms: 1 }) }, { jobType: "t.work", input: jsonAny({ ms: 1 }) }, { jobType: "t.parents", input: jsonAny(null), dependsOnIndex: [0, 1] }],
  });
  const [first, second, child] = tasks as [Task, Task, Task];
  t.equal(child.state, TaskState.WAITING);
  const done = await finished(child);
  t.equal(done.state, TaskState.SUCCEEDED, done.lastError);
  const output = anyJson(done.output) as { parents: unknown[]; outputs: { taskId: string; output: { taskId: string } }[] };
  t.same(output.parents, [first, second].map((x) => ({ taskId: x.id, jobType: "t.work", typeUrl: "type.googleapis.com/google.protobuf.Value" })));
  t.same(output.outputs.map((o) => [o.taskId, o.output.taskId]), [[first.id, first.id], [second.id, second.id]], "each parent's own output, unpacked");
});

t.test("RegisterJobType checks the module: inside the inline folder, an existing file", async (t) => {
  const escape = await rejection(() => s.jobTypes.registerJobType({ name: "t.bad", inlineModule: "../helpers/server.ts" }));
  t.equal(escape.code, Code.InvalidArgument);
  t.match(escape.message, /inline_module.*without "\.\."/);
  const missing = await rejection(() => s.jobTypes.registerJobType({ name: "t.bad", inlineModule: "missing.ts" }));
  t.match(missing.message, /inline_module: "missing.ts" is not a file in the server's inline folder/);
  const { jobType } = await s.jobTypes.getJobType({ name: "t.work" });
  t.equal(jobType?.inlineModule, "work.ts");
});

t.test("an inline task runs on a pool thread through claim, lease and completion", async (t) => {
  const done = await finished(await submit("t.work", { ms: 5 }));
  t.equal(done.state, TaskState.SUCCEEDED, done.lastError);
  const output = anyJson(done.output) as { threadId: number; taskId: string; attempt: number };
  t.ok(output.threadId > 0, "ran on a worker thread, not the main one");
  t.same([output.taskId, output.attempt], [done.id, 1]);
  t.equal(done.attempts.length, 1);
  t.match(done.attempts[0]!.workerId, /^inline:/, "the attempt names the server's inline worker");
});

t.test("a task that never yields is stopped at its timeout, retried, and the server keeps serving", async (t) => {
  await register("t.spin", "spin.ts", { defaultTimeout: durationFromMs(300), defaultMaxAttempts: 2 });
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  const task = await submit("t.spin", {});
  let served = 0;
  let state = TaskState.PENDING;
  while (state !== TaskState.DEAD) {
    state = (await s.tasks.getTask({ id: task.id })).task!.state;
    served++;
    await new Promise((r) => setTimeout(r, 20));
  }
  delay.disable();
  const dead = (await s.tasks.getTask({ id: task.id })).task!;
  t.same(
    dead.attempts.map((a) => a.outcome),
    [AttemptOutcome.TIMED_OUT, AttemptOutcome.TIMED_OUT],
    "both attempts timed out",
  );
  // The runner's own timer and the server's lease sweeper race to end the attempt (both at 300 ms);
  // either way it is TIMED_OUT and its thread is stopped (a revoke aborts the thread too).
  t.match(dead.attempts[0]!.error, /timed out after 300 ms/);
  t.ok(served >= 5, `${served} GetTask calls were answered while the loops spun`); // a blocked event loop would answer one or two
  t.comment(`event-loop delay while two infinite loops ran: p99 ${(delay.percentile(99) / 1e6).toFixed(1)} ms, max ${(delay.max / 1e6).toFixed(1)} ms`);
  t.equal((await finished(await submit("t.work", {}))).state, TaskState.SUCCEEDED, "the pool replaced the stopped threads");
});

t.test("Cancel of a running inline task stops its thread", async (t) => {
  const task = await submit("t.spin", {}, { timeout: durationFromMs(3_600_000) });
  while ((await s.tasks.getTask({ id: task.id })).task!.state !== TaskState.RUNNING) await new Promise((r) => setTimeout(r, 20));
  await s.tasks.cancel({ id: task.id, reason: "enough" });
  while (inline.runningCount > 0) await new Promise((r) => setTimeout(r, 20));
  t.pass("the attempt's thread was stopped");
  const cancelled = (await s.tasks.getTask({ id: task.id })).task!;
  t.same([cancelled.state, cancelled.attempts[0]!.outcome], [TaskState.CANCELLED, AttemptOutcome.CANCELLED]);
  t.equal((await finished(await submit("t.work", {}))).state, TaskState.SUCCEEDED);
});

t.test("throw, reject, process.exit and running out of memory fail only their own attempt", async (t) => {
  await register("t.throw", "throw.ts", { defaultMaxAttempts: 2 });
  await register("t.reject", "reject.ts", { defaultMaxAttempts: 3 });
  await register("t.exit", "exit.ts", { defaultMaxAttempts: 1 });
  await register("t.hog", "hog.ts", { defaultMaxAttempts: 1 });
  const bystander = submit("t.work", { ms: 500 });
  const [thrown, rejected, permanent, exited, hog] = await Promise.all([
    submit("t.throw", {}).then(finished),
    submit("t.reject", {}).then(finished),
    submit("t.reject", { permanent: true }).then(finished),
    submit("t.exit", {}).then(finished),
    submit("t.hog", {}).then(finished),
  ]);
  for (const x of [thrown, rejected, permanent, exited, hog]) t.comment(x.jobType, x.attempts.map((a) => `${AttemptOutcome[a.outcome]} ${a.workerId} ${a.startedAt?.seconds}:${a.startedAt?.nanos} ${a.endedAt?.seconds}:${a.endedAt?.nanos} ${a.error}`).join(" | "));
  t.same([thrown.state, thrown.attempts.length, thrown.attempts[0]!.error], [TaskState.DEAD, 2, "thrown by the handler"], "a throw fails the attempt and retries");
  t.same([rejected.state, rejected.attempts.length, rejected.lastError], [TaskState.DEAD, 3, "rejected later"]);
  t.same([permanent.state, permanent.attempts.length, permanent.lastError], [TaskState.DEAD, 1, "this input can never work"], "a NonRetryableError dead-letters at once");
  t.same([exited.state, exited.attempts[0]!.outcome], [TaskState.DEAD, AttemptOutcome.FAILED]);
  t.match(exited.lastError, /exit/i, `process.exit: ${exited.lastError}`);
  t.same([hog.state, hog.attempts[0]!.outcome], [TaskState.DEAD, AttemptOutcome.FAILED]);
  t.match(hog.lastError, /memory/i, `out of memory: ${hog.lastError}`);
  t.equal((await finished(await bystander)).state, TaskState.SUCCEEDED, "a task running alongside them was not disturbed");
});

t.test("up to and beyond the pool's size: never more claimed than threads + queue, all finish", async (t) => {
  const tasks = await Promise.all(Array.from({ length: 9 }, () => submit("t.work", { ms: 150 })));
  const ids = tasks.map((x) => x.id);
  let mostHeld = 0;
  let mostRunning = 0;
  const sampler = setInterval(() => {
    mostHeld = Math.max(mostHeld, inline.runningCount);
  }, 5);
  while (true) {
    const rows = await s.server.engine.database.db.query<{ state: string; n: string }>(
      "SELECT state, count(*)::text AS n FROM task WHERE id = ANY($1::bigint[]) GROUP BY state",
      [ids],
    );
    const count = (state: string) => Number(rows.find((r) => r.state === state)?.n ?? 0);
    mostRunning = Math.max(mostRunning, count("running"));
    if (count("succeeded") === ids.length) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  clearInterval(sampler);
  t.ok(mostHeld > 0 && mostHeld <= 3, `at most 2 threads + 1 queued were held at once (held ${mostHeld})`);
  // A finished attempt's credit comes back when its report is handed to the writer, so the next
  // claim may commit before that report does: RUNNING rows can briefly exceed the credits by the
  // reports still being written (at most one per credit).
  t.ok(mostRunning <= 6, `RUNNING in the database stayed within the credits plus the reports being written (${mostRunning})`);
  t.ok(mostHeld >= 2, "the pool was used in parallel");
});
