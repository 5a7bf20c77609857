/**
 * Several final reports in one Claim message (`reports`, answered by one `report_results`), and
 * credits coming back when a report arrives rather than when it is written.
 */
import { create } from "@bufbuild/protobuf";
import t from "tap";
import type { Assignment as HeldAssignment, CompletionReport } from "../../src/core/task.js";
import { Dispatcher } from "../../src/dispatch/dispatcher.js";
import { ReportBatcher, type ReportAnswer } from "../../src/dispatch/report-batcher.js";
import { TaskState } from "../../src/gen/taskwire/v1/task_pb.js";
import { ReportBatchSchema, ReportKind, type Assignment } from "../../src/gen/taskwire/v1/worker_pb.js";
import { openClaimStream } from "../helpers/claim-stream.js";
import { jsonAny } from "../helpers/payload.js";
import { testLogger } from "../helpers/logger.js";
import { startTestServer } from "../helpers/server.js";

const s = await startTestServer(t);
const state = async (id: string) => (await s.tasks.getTask({ id })).task!.state;

const completion = (a: Assignment) => ({ taskId: a.taskId, attempt: a.attempt, leaseToken: a.leaseToken, output: jsonAny("done") });

/** Receives assignments until `n` are held. */
async function assignments(w: ReturnType<typeof openClaimStream>, n: number): Promise<Assignment[]> {
  const held: Assignment[] = [];
  while (held.length < n) held.push(...(await w.next("assignments")).assignments);
  return held;
}

t.test("one reports message: each report is judged on its own and answered in one report_results", async (t) => {
  await s.jobTypes.registerJobType({ name: "batch.mixed", defaultMaxAttempts: 2 });
  const ids = (await s.tasks.submitBatch({ tasks: Array.from({ length: 5 }, (_, i) => ({ jobType: "batch.mixed", input: jsonAny(i) })) })).tasks.map((x) => x.id);
  const w = openClaimStream(s.workers, { jobTypes: ["batch.mixed"], credits: 5 });
  t.teardown(() => w.abort());
  await w.next("welcome");
  const [a, b, c, d, e] = await assignments(w, 5);
  w.send({
    case: "reports",
    value: create(ReportBatchSchema, {
      completions: [completion(a!), completion(b!), { ...completion(c!), leaseToken: "00000000-0000-4000-8000-000000000000" }],
      failures: [{ taskId: d!.taskId, attempt: d!.attempt, leaseToken: d!.leaseToken, error: "boom", nonRetryable: true }],
      releases: [{ taskId: e!.taskId, attempt: e!.attempt, leaseToken: e!.leaseToken, reason: "draining" }],
    }),
  });
  const { results } = await w.next("reportResults");
  const byTask = new Map(results.map((r) => [r.taskId, r]));
  t.equal(results.length, 5, "one result per report");
  t.match(byTask.get(a!.taskId), { accepted: true, kind: ReportKind.COMPLETE });
  t.match(byTask.get(b!.taskId), { accepted: true, kind: ReportKind.COMPLETE });
  t.match(byTask.get(c!.taskId), { accepted: false, kind: ReportKind.COMPLETE, error: /lease token/ }, "a wrong token is rejected alone, with the reason");
  t.match(byTask.get(d!.taskId), { accepted: true, kind: ReportKind.FAIL });
  t.match(byTask.get(e!.taskId), { accepted: true, kind: ReportKind.RELEASE });
  t.same(w.taken("reportResult"), [], "no single report_result for a batch");
  t.equal(await state(a!.taskId), TaskState.SUCCEEDED);
  t.equal(await state(b!.taskId), TaskState.SUCCEEDED);
  t.equal(await state(c!.taskId), TaskState.RUNNING, "the rejected completion changed nothing");
  t.equal(await state(d!.taskId), TaskState.DEAD);
  // The released task went back to PENDING and, with credits free, straight to this worker again.
  const again = (await w.next("assignments")).assignments;
  t.ok(again.some((x) => x.taskId === e!.taskId && x.attempt === e!.attempt + 1), "the released task is assigned again");
  t.equal(ids.length, 5);
});

t.test("a reports message with no reports, or more than 1000, ends the stream with INVALID_ARGUMENT", async (t) => {
  await s.jobTypes.registerJobType({ name: "batch.bounds" });
  for (const count of [0, 1001]) {
    const w = openClaimStream(s.workers, { jobTypes: ["batch.bounds"], credits: 1 });
    await w.next("welcome");
    const fake = { taskId: "1", attempt: 1, leaseToken: "00000000-0000-4000-8000-000000000000" };
    w.send({ case: "reports", value: create(ReportBatchSchema, { completions: Array.from({ length: count }, () => fake) }) });
    const error = await w.next("reportResults", 5_000).then(
      () => new Error("answered"),
      (e: Error) => e,
    );
    t.match(error.message, /stream ended before a reportResults message: .*\[invalid_argument\] reports: carries \d+ reports; send 1 to 1000 per message/, `${count} reports`);
    await w.close();
  }
});

/** Writes completions only when the test opens the gate. */
class GatedBatcher extends ReportBatcher {
  open: () => void = () => undefined;
  readonly gate = new Promise<void>((resolve) => (this.open = resolve));
  override async complete(report: CompletionReport): Promise<ReportAnswer> {
    await this.gate;
    return super.complete(report);
  }
}

t.test("a report frees its credit when it arrives: the next task is assigned while the report is still being written", async (t) => {
  await s.jobTypes.registerJobType({ name: "batch.credits" });
  await s.tasks.submitBatch({ tasks: [{ jobType: "batch.credits", input: jsonAny(1) }, { jobType: "batch.credits", input: jsonAny(2) }] });
  const db = s.server.engine.database.db;
  const batcher = new GatedBatcher(db);
  const dispatcher = new Dispatcher({ db, pool: s.server.engine.database.pool, limits: s.server.engine.jobTypes, batcher, logger: testLogger(), safetyPollMs: 60_000 });
  t.teardown(() => dispatcher.stop());
  const assigned: HeldAssignment[][] = [];
  let wake = () => {};
  const session = dispatcher.open({
    namespace: "default",
    workerId: "w-credits",
    jobTypes: ["batch.credits"],
    credits: 1,
    sink: {
      assign: (as) => {
        assigned.push(as);
        wake();
      },
      revoke: () => {},
    },
  });
  const waitForAssignments = async (n: number) => {
    const deadline = Date.now() + 10_000;
    while (assigned.length < n) {
      if (Date.now() > deadline) throw new Error(`only ${assigned.length} assignment batches`);
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, 50);
      });
    }
  };
  await waitForAssignments(1);
  const first = assigned[0]![0]!;
  const answer = dispatcher.complete({ namespace: "default", taskId: first.taskId, attempt: first.attempt, leaseToken: first.leaseToken, output: null });
  await waitForAssignments(2);
  t.equal(assigned[1]!.length, 1, "the second task came with the first one's report still unwritten");
  t.equal(await state(first.taskId), TaskState.RUNNING, "the first completion is not written yet");
  batcher.open();
  t.equal(await answer, "succeeded");
  t.equal(await state(first.taskId), TaskState.SUCCEEDED);
  await dispatcher.close(session, { clean: true, why: "test over" });
});
