/** The worker's side of one Claim stream: final reports of one event-loop turn go out as one message. */
import { create } from "@bufbuild/protobuf";
import t from "tap";
import { AssignmentSchema, type ClaimRequest } from "../../src/gen/taskwire/v1/worker_pb.js";
import { completeRequest, failRequest, heartbeatRequest, releaseRequest } from "../../src/sdk/claim-messages.js";
import { ClaimSession } from "../../src/sdk/claim-session.js";

const assignment = (taskId: string) => create(AssignmentSchema, { taskId, attempt: 1, leaseToken: `token-${taskId}` });
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

/** Everything queued so far, without waiting for more. */
async function drained(session: ClaimSession): Promise<ClaimRequest[]> {
  session.halfClose();
  const out: ClaimRequest[] = [];
  for await (const request of session.requests) out.push(request);
  return out;
}

t.test("reports sent in one turn leave as one `reports` message, in order by kind", async (t) => {
  const session = new ClaimSession(new Set());
  session.welcome(60_000);
  t.teardown(() => session.end());
  t.ok(session.send(completeRequest(assignment("1"), undefined)));
  t.ok(session.send(failRequest(assignment("2"), "boom", false)));
  t.ok(session.send(completeRequest(assignment("3"), undefined)));
  t.ok(session.send(releaseRequest(assignment("4"), "draining")));
  t.ok(session.send(heartbeatRequest()), "other messages go out at once");
  await nextTurn();
  const sent = await drained(session);
  t.same(sent.map((r) => r.message.case), ["heartbeat", "reports"]);
  const batch = sent[1]!.message.case === "reports" ? sent[1]!.message.value : undefined;
  t.same(batch?.completions.map((c) => c.taskId), ["1", "3"]);
  t.same(batch?.failures.map((f) => [f.taskId, f.error]), [["2", "boom"]]);
  t.same(batch?.releases.map((r) => r.taskId), ["4"]);
});

t.test("a report alone goes out as its own message; half-closing sends what is gathered first", async (t) => {
  const session = new ClaimSession(new Set());
  session.welcome(60_000);
  t.teardown(() => session.end());
  session.send(completeRequest(assignment("7"), undefined));
  await nextTurn();
  session.send(completeRequest(assignment("8"), undefined));
  session.send(completeRequest(assignment("9"), undefined));
  const sent = await drained(session); // before the turn ends: halfClose flushes them
  t.same(sent.map((r) => r.message.case), ["complete", "reports"]);
});

t.test("nothing is sent before the welcome or after the end; reports gathered before the end are dropped (adoption resends them)", async (t) => {
  const session = new ClaimSession(new Set());
  t.notOk(session.send(completeRequest(assignment("1"), undefined)), "not welcomed yet");
  session.welcome(60_000);
  t.ok(session.send(completeRequest(assignment("2"), undefined)));
  session.end();
  t.notOk(session.send(completeRequest(assignment("3"), undefined)), "ended");
  await nextTurn();
  const out: ClaimRequest[] = [];
  for await (const request of session.requests) out.push(request);
  t.same(out, []);
});
