/** Stopping a server while inline tasks run: they finish within the grace period or go back to PENDING, never lost. */
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import t from "tap";
import { defaultConfig } from "../../src/config.js";
import { AttemptOutcome, TaskState } from "../../src/gen/taskwire/v1/task_pb.js";
import { startServer } from "../../src/main.js";
import { jsonAny } from "../helpers/payload.js";
import { testLogger } from "../helpers/logger.js";
import { startTestServer } from "../helpers/server.js";

// This server runs no inline tasks; it reads what the inline one left behind.
const s = await startTestServer(t);

async function inlineServer(graceMs: number) {
  return startServer(
    { ...defaultConfig({}), port: 0, databaseUrl: s.databaseUrl, logLevel: "silent", inlineDir: "test/fixtures/inline", inlineMaxThreads: 2, inlineMaxQueue: 0, inlineGraceMs: graceMs },
    testLogger(),
  );
}

async function runningOn(ids: string[]) {
  for (;;) {
    const tasks = await Promise.all(ids.map(async (id) => (await s.tasks.getTask({ id })).task!));
    if (tasks.every((x) => x.state === TaskState.RUNNING)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

t.test("tasks that outlast the grace period are released to PENDING without using an attempt", async (t) => {
  await s.jobTypes.registerJobType({ name: "t.work", defaultMaxAttempts: 1 });
  const server = await inlineServer(100);
  await server.engine.jobTypes.register({ ...(await server.engine.jobTypes.get("default", "t.work")), inlineModule: "work.ts" });
  await server.engine.inline!.refresh();
  const tasks = (await s.tasks.submitBatch({ tasks: [1, 2].map(() => ({ jobType: "t.work", input: jsonAny({ ms: 5_000 }) })) })).tasks;
  await runningOn(tasks.map((x) => x.id));
  const stopping = Date.now();
  await server.stop();
  t.ok(Date.now() - stopping < 4_000, "the threads were stopped, not waited for");
  for (const { id } of tasks) {
    const task = (await s.tasks.getTask({ id })).task!;
    t.same([task.state, task.maxAttempts, task.attempts.map((a) => a.outcome)], [TaskState.PENDING, 2, [AttemptOutcome.RELEASED]], `task ${id} is PENDING again, its attempt not counted`);
  }
  // Another server (a restart) finishes them.
  const next = await inlineServer(100);
  t.teardown(() => next.stop());
  for (const { id } of tasks) {
    const done = (await s.tasks.waitTask({ id, timeout: durationFromMs(30_000) })).task!;
    t.same([done.state, done.attempts.map((a) => a.outcome)], [TaskState.SUCCEEDED, [AttemptOutcome.RELEASED, AttemptOutcome.SUCCEEDED]]);
  }
  await next.stop();
});

t.test("tasks that end within the grace period finish before the server stops", async (t) => {
  const server = await inlineServer(10_000);
  const tasks = (await s.tasks.submitBatch({ tasks: [1, 2].map(() => ({ jobType: "t.work", input: jsonAny({ ms: 400 }) })) })).tasks;
  await runningOn(tasks.map((x) => x.id));
  await server.stop();
  for (const { id } of tasks) t.equal((await s.tasks.getTask({ id })).task!.state, TaskState.SUCCEEDED, `task ${id} finished during the shutdown`);
});
