/** Inline job types obey limits too: the pool's session claims through the same limited claim. */
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import t from "tap";
import { TaskState } from "../../src/gen/taskwire/v1/task_pb.js";
import { historyPeaks } from "../helpers/limits.js";
import { jsonAny } from "../helpers/payload.js";
import { startTestServer } from "../helpers/server.js";

const s = await startTestServer(t, { inline: { dir: "test/fixtures/inline", maxThreads: 2, maxQueue: 2 }, safetyPollMs: 60_000 });
const db = s.server.engine.database.db;

t.test("max_running_per_key 1 on a pool with 2 threads: tasks of one key one at a time, another key alongside", async (t) => {
  await s.jobTypes.registerJobType({ name: "t.work", inlineModule: "work.ts", maxRunningPerKey: 1 });
  const { tasks } = await s.tasks.submitBatch({
    tasks: ["a", "a", "a", "b", "b"].map((key) => ({ jobType: "t.work", input: jsonAny({ ms: 60 }), concurrencyKey: key })),
  });
  const done = await Promise.all(tasks.map((x) => s.tasks.waitTask({ id: x.id, timeout: durationFromMs(30_000) })));
  t.same(done.map((d) => [d.task!.state, d.task!.lastError]), tasks.map(() => [TaskState.SUCCEEDED, ""]), "all succeeded (woken by notifications: the safety poll is a minute)");
  const peaks = await historyPeaks(db, "t.work");
  t.equal(peaks.perKey.get("a"), 1, "key a: never two at once");
  t.equal(peaks.perKey.get("b"), 1, "key b: never two at once");
  t.equal(peaks.total, 2, "but a and b ran alongside each other on the two threads");
});
