/**
 * The inline pool is shared by every namespace with inline job types: together their sessions
 * claim no more than the pool takes at once (threads + queue), so no task is refused by a full
 * pool, and each namespace gets its turn. (Each session used to claim the whole pool's capacity:
 * with two namespaces, one thread and no queue, Piscina refused the second task and that was
 * recorded as the handler's failure, until the tasks were dead-lettered.)
 */
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import t from "tap";
import { AttemptOutcome, TaskState } from "../../src/gen/taskwire/v1/task_pb.js";
import { jsonAny } from "../helpers/payload.js";
import { clientsFor, createTestKey, startTestServer } from "../helpers/server.js";

const s = await startTestServer(t, { inline: { dir: "test/fixtures/inline", maxThreads: 1, maxQueue: 0 } });
const database = s.server.engine.database;
const namespaces = await Promise.all(["alpha", "beta"].map(async (name) => ({ name, ...clientsFor(s.url, (await createTestKey(database, name, ["admin"])).token) })));

t.test("two namespaces, one thread, no queue: every task succeeds at its first counted attempt", async (t) => {
  for (const c of namespaces) await c.jobTypes.registerJobType({ name: "t.work", inlineModule: "work.ts", defaultMaxAttempts: 3 });
  let mostOnPool = 0;
  const sampler = setInterval(() => (mostOnPool = Math.max(mostOnPool, s.server.engine.inline!.runningCount)), 5);
  t.teardown(() => clearInterval(sampler));
  const submitted = await Promise.all(
    namespaces.map(async (c) => ({ c, tasks: (await c.tasks.submitBatch({ tasks: Array.from({ length: 4 }, () => ({ jobType: "t.work", input: jsonAny({ ms: 100 }) })) })).tasks })),
  );
  for (const { c, tasks } of submitted) {
    for (const task of tasks) {
      const done = (await c.tasks.waitTask({ id: task.id, timeout: durationFromMs(30_000) })).task!;
      // A RELEASED attempt (a claim handed back uncounted when its namespace's turn ended) is allowed.
      const counted = done.attempts.filter((a) => a.outcome !== AttemptOutcome.RELEASED);
      t.same(
        [TaskState[done.state], counted.map((a) => AttemptOutcome[a.outcome])],
        ["SUCCEEDED", ["SUCCEEDED"]],
        `${c.name} ${done.id}: one counted attempt, not failed by a full pool (${done.attempts.map((a) => a.error).join(" | ")})`,
      );
    }
  }
  t.equal(mostOnPool, 1, "never more than the one thread's worth on the pool");
});
