/**
 * A job type re-registered without its inline module is no longer run by the server: the inline
 * session of its namespace closes, so its tasks wait for a remote worker.
 */
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import t from "tap";
import { TaskState } from "../../src/gen/taskwire/v1/task_pb.js";
import { jsonAny } from "../helpers/payload.js";
import { startTestServer } from "../helpers/server.js";

const REFRESH_MS = 200;
const s = await startTestServer(t, { inline: { dir: "test/fixtures/inline", maxThreads: 1 }, safetyPollMs: REFRESH_MS });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const submit = async () => (await s.tasks.submit({ task: { jobType: "t.work", input: jsonAny({ ms: 1 }) } })).task!;

t.test("the namespace's only inline job type re-registered with inline_module \"\": its tasks wait for a remote worker", async (t) => {
  await s.jobTypes.registerJobType({ name: "t.work", inlineModule: "work.ts" });
  const inline = (await s.tasks.waitTask({ id: (await submit()).id, timeout: durationFromMs(30_000) })).task!;
  t.equal(inline.state, TaskState.SUCCEEDED, "ran inline while it was inline");

  await s.jobTypes.registerJobType({ name: "t.work", inlineModule: "" });
  t.equal((await s.jobTypes.getJobType({ name: "t.work" })).jobType?.inlineModule, "", "no longer inline");
  await sleep(3 * REFRESH_MS); // past a refresh of the inline job types, whichever way it learns

  const task = await submit();
  await sleep(1_500);
  const after = (await s.tasks.getTask({ id: task.id })).task!;
  t.same([after.state, after.attempts.length], [TaskState.PENDING, 0], `still waiting for a remote worker (${after.attempts.map((a) => a.workerId).join(", ")})`);
});
