/**
 * A heartbeat that runs after a completion committed but before the dispatcher settled it must not
 * call the lease lost (found by the benchmark: the SDK saw "revoked" for a task that succeeded).
 */
import t from "tap";
import type { Assignment, CompletionReport } from "../../src/core/task.js";
import { Dispatcher } from "../../src/dispatch/dispatcher.js";
import { ReportBatcher, type ReportAnswer } from "../../src/dispatch/report-batcher.js";
import { jsonAny } from "../helpers/payload.js";
import { testLogger } from "../helpers/logger.js";
import { startTestServer } from "../helpers/server.js";

const s = await startTestServer(t);
const db = s.server.engine.database.db;

/** Writes completions at once, but answers only when the test opens the gate. */
class GatedBatcher extends ReportBatcher {
  open: () => void = () => undefined;
  readonly gate = new Promise<void>((resolve) => (this.open = resolve));
  override async complete(report: CompletionReport): Promise<ReportAnswer> {
    const answer = await super.complete(report);
    await this.gate;
    return answer;
  }
}

t.test("a committed but unsettled completion is not revoked by a heartbeat", async (t) => {
  await s.jobTypes.registerJobType({ name: "race.hb" });
  await s.tasks.submit({ task: { jobType: "race.hb", input: jsonAny(1) } });
  const batcher = new GatedBatcher(db);
  const dispatcher = new Dispatcher({ db, pool: s.server.engine.database.pool, limits: s.server.engine.jobTypes, batcher, logger: testLogger(), safetyPollMs: 60_000 });
  t.teardown(() => dispatcher.stop());
  const revoked: string[] = [];
  let assigned!: (a: Assignment) => void;
  const assignment = new Promise<Assignment>((resolve) => (assigned = resolve));
  const session = dispatcher.open({
    namespace: "default",
    workerId: "w-race",
    jobTypes: ["race.hb"],
    credits: 1,
    sink: { assign: (as) => assigned(as[0]!), revoke: (n) => revoked.push(n.reason) },
  });
  const a = await assignment;
  const answered = dispatcher.complete({ namespace: a.namespace, taskId: a.taskId, attempt: a.attempt, leaseToken: a.leaseToken, output: null });
  // The completion is committed: the task is no longer RUNNING, so its lease cannot be extended.
  while ((await db.query<{ state: string }>("SELECT state FROM task WHERE id = $1", [a.taskId]))[0]!.state !== "succeeded") {
    await new Promise((r) => setTimeout(r, 5));
  }
  await dispatcher.heartbeat(session);
  t.same(revoked, [], "the heartbeat left the lease to its report");
  batcher.open();
  t.equal(await answered, "succeeded");
  t.equal(session.inFlight.size, 0, "the credit came back with the answer");
  await dispatcher.close(session, { clean: true, why: "test over" });
});
