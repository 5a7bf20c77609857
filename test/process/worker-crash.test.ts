/** A worker process killed with SIGKILL mid-task: its task is re-delivered within the lease. */
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import t from "tap";
import { AttemptOutcome, TaskState } from "../../src/gen/taskwire/v1/task_pb.js";
import { createClient, createWorker, defineJob } from "../../src/sdk/index.js";
import { startTestServer } from "../helpers/server.js";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const s = await startTestServer(t, { sweepIntervalMs: 100 });
const client = createClient({ baseUrl: s.url });
t.teardown(() => client.close());

t.test("SIGKILL mid-task: attempt 2 runs on another worker within the lease; attempt 1 is recorded as lost", async (t) => {
  await s.jobTypes.registerJobType({ name: "hang", leaseDuration: durationFromMs(1_000), defaultMaxAttempts: 3, defaultRetry: { backoffBase: durationFromMs(0), backoffCap: durationFromMs(0) } });
  const child = spawn(process.execPath, ["--import", "tsx", "test/fixtures/hanging-worker.ts"], {
    cwd: repo,
    env: { ...process.env, TASKWIRE_URL: s.url, WORKER_ID: "doomed" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  t.teardown(() => void child.kill("SIGKILL"));
  let stdout = "";
  const seen = (text: string) =>
    new Promise<void>((resolve, reject) => {
      const check = () => (stdout.includes(text) ? resolve() : undefined);
      child.stdout!.on("data", (chunk: Buffer) => {
        stdout += chunk.toString();
        check();
      });
      child.once("exit", (code) => reject(new Error(`worker exited (${code}) before printing ${JSON.stringify(text)}: ${stdout}`)));
      check();
    });
  await seen("ready");
  const task = (await s.tasks.submit({ task: { jobType: "hang", input: { $typeName: "google.protobuf.Any", typeUrl: "type.googleapis.com/google.protobuf.Value", value: new Uint8Array([8, 0]) } } })).task!;
  await seen(`started ${task.id} 1`);
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGKILL");
  await exited;
  const killedAt = Date.now();

  let secondStartedAt = 0;
  const rescue = createWorker({
    baseUrl: s.url,
    workerId: "rescuer",
    concurrency: 1,
    jobs: [defineJob({ name: "hang", input: "json", output: "json", handler: async () => ((secondStartedAt = Date.now()), "rescued") })],
  });
  t.teardown(() => rescue.stop());
  await rescue.start();
  let done = await client.getTask(task.id);
  for (let i = 0; i < 200 && done.state !== TaskState.SUCCEEDED; i++) {
    await new Promise((r) => setTimeout(r, 50));
    done = await client.getTask(task.id);
  }
  t.equal(done.state, TaskState.SUCCEEDED);
  t.ok(secondStartedAt - killedAt < 5_000, `re-delivered ${secondStartedAt - killedAt} ms after the kill (lease 1 s)`);
  t.same(
    done.attempts.map((a) => [a.number, a.workerId, a.outcome]),
    [[1, "doomed", AttemptOutcome.LOST], [2, "rescuer", AttemptOutcome.SUCCEEDED]],
  );
  t.match(done.attempts[0]!.error, /lost: worker doomed sent no heartbeat within the lease/);
});
