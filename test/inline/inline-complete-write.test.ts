/**
 * A finished inline attempt whose success cannot be written is not recorded as a handler failure:
 * the work was done, so it is not counted as a failed attempt (nor dead-lettered); its lease ends
 * and the sweeper takes it back, and a later attempt's success is written.
 */
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import t from "tap";
import { AttemptOutcome, TaskState } from "../../src/gen/taskwire/v1/task_pb.js";
import { jsonAny } from "../helpers/payload.js";
import { startTestServer } from "../helpers/server.js";

const s = await startTestServer(t, { inline: { dir: "test/fixtures/inline", maxThreads: 1 }, sweepIntervalMs: 100 });
const db = s.server.engine.database.db;

t.test("PostgreSQL refuses the completion write: the attempt is lost to its lease, not FAILED", async (t) => {
  await s.jobTypes.registerJobType({
    name: "t.work",
    inlineModule: "work.ts",
    leaseDuration: durationFromMs(1_000),
    defaultMaxAttempts: 5,
    defaultRetry: { backoffBase: durationFromMs(0), backoffCap: durationFromMs(0) },
  });
  // A real error from the database on exactly the success write (the failure write still works).
  await db.query(`CREATE FUNCTION refuse_success() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'completion refused by the test'; END $$`);
  await db.query(`CREATE TRIGGER refuse_success BEFORE UPDATE ON task FOR EACH ROW WHEN (NEW.state = 'succeeded') EXECUTE FUNCTION refuse_success()`);

  const { task } = await s.tasks.submit({ task: { jobType: "t.work", input: jsonAny({ ms: 1 }) } });
  let first;
  do {
    await new Promise((r) => setTimeout(r, 20));
    first = (await s.tasks.getTask({ id: task!.id })).task!.attempts[0];
  } while (first === undefined || first.outcome === AttemptOutcome.RUNNING);
  t.equal(AttemptOutcome[first.outcome], "LOST", `the first attempt ended when its lease did (${first.error})`);
  t.notMatch(first.error, /completion refused/, "the write's error is not recorded as the handler's");

  await db.query("DROP TRIGGER refuse_success ON task");
  const done = (await s.tasks.waitTask({ id: task!.id, timeout: durationFromMs(30_000) })).task!;
  t.equal(done.state, TaskState.SUCCEEDED, done.lastError);
  t.notOk(done.attempts.some((a) => a.outcome === AttemptOutcome.FAILED), "no attempt counted as failed");
});
