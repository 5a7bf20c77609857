/**
 * The transition table, written out by hand: a change to TASK_TRANSITIONS must change this test too
 * (and migration 0001's CHECK constraints, which mirror it).
 */
import t from "tap";
import {
  FINISHED_STATES,
  TASK_ACTIONS,
  TASK_STATES,
  TASK_TRANSITIONS,
  type TaskAction,
  type TaskState,
  illegalTransitionMessage,
  isFinished,
  statesAllowing,
  transition,
} from "../../src/core/task-state.js";

const STATES: TaskState[] = ["waiting", "pending", "running", "succeeded", "dead", "cancelled"];
const ACTIONS: TaskAction[] = [
  "unblock",
  "claim",
  "complete",
  "fail_retry",
  "fail_dead",
  "release",
  "cancel",
  "dependency_failed",
  "retry",
  "retry_waiting",
];

/** Every legal (state, action) pair and where it leads; every pair not listed is illegal. */
const LEGAL: Record<TaskAction, Partial<Record<TaskState, TaskState>>> = {
  unblock: { waiting: "pending" },
  claim: { pending: "running" },
  complete: { running: "succeeded" },
  fail_retry: { running: "pending" },
  fail_dead: { running: "dead" },
  release: { running: "pending" },
  cancel: { waiting: "cancelled", pending: "cancelled", running: "cancelled" },
  dependency_failed: { waiting: "dead" },
  retry: { dead: "pending", cancelled: "pending" },
  retry_waiting: { dead: "waiting", cancelled: "waiting" },
};

t.test("the states and actions are exactly the documented ones", async (t) => {
  t.same([...TASK_STATES], STATES);
  t.same(TASK_ACTIONS, ACTIONS);
  t.same(Object.keys(TASK_TRANSITIONS), ACTIONS);
});

t.test("the table holds exactly the legal pairs", async (t) => {
  for (const action of ACTIONS) {
    t.same(statesAllowing(action), Object.keys(LEGAL[action]), `${action} is allowed from`);
  }
  const legalPairs = ACTIONS.flatMap((action) => Object.keys(LEGAL[action]).map((state) => `${state}:${action}`));
  t.equal(legalPairs.length, 14, "14 legal pairs out of 60");
});

t.test("every (state, action) pair", async (t) => {
  for (const state of STATES) {
    for (const action of ACTIONS) {
      const result = transition(state, action);
      const expected = LEGAL[action][state];
      if (expected !== undefined) {
        t.same(result, { ok: true, to: expected }, `${action} from ${state} leads to ${expected}`);
        continue;
      }
      t.equal(result.ok, false, `${action} from ${state} is illegal`);
      if (result.ok) continue;
      const allowed = Object.keys(LEGAL[action]).map((s) => s.toUpperCase());
      t.match(result.reason, `that is ${state.toUpperCase()};`, `${action} from ${state}: names the current state`);
      t.ok(result.reason.endsWith(`allowed only from ${allowed.join(", ")}`), `${action} from ${state}: names ${allowed.join(", ")}`);
      t.equal(result.reason, illegalTransitionMessage(state, action));
    }
  }
});

t.test("the illegal-transition message reads as a sentence", async (t) => {
  t.same(transition("succeeded", "cancel"), {
    ok: false,
    reason: "cannot cancel a task that is SUCCEEDED; allowed only from WAITING, PENDING, RUNNING",
  });
  t.equal(illegalTransitionMessage("running", "dependency_failed"),
    "cannot dependency failed a task that is RUNNING; allowed only from WAITING");
  t.equal(illegalTransitionMessage("pending", "fail_retry"),
    "cannot fail retry a task that is PENDING; allowed only from RUNNING");
});

t.test("finished states", async (t) => {
  t.same([...FINISHED_STATES], ["succeeded", "dead", "cancelled"]);
  const finished = new Set<TaskState>(["succeeded", "dead", "cancelled"]);
  for (const state of STATES) t.equal(isFinished(state), finished.has(state), `isFinished(${state})`);
});

t.test("finished states are left only by retry, and every action into one comes from an unfinished state", async (t) => {
  for (const action of ACTIONS) {
    for (const [from, to] of Object.entries(LEGAL[action]) as [TaskState, TaskState][]) {
      if (isFinished(from)) t.ok(action === "retry" || action === "retry_waiting", `${action} leaves ${from}`);
      if (isFinished(to)) t.notOk(isFinished(from), `${action} into ${to} starts unfinished`);
    }
  }
});
