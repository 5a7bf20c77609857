/** The pure part of dependencies: how a submit's tasks start, their edges, and what Retry does. */
import t from "tap";
import { compareIds, dependencyFailedReason, existingParents, graphEdges, hasAnyDependencies, planGraph, planKeyedGraph, planRetry } from "../../src/core/dependencies.js";
import type { TaskState } from "../../src/core/task-state.js";

t.test("ids compare as numbers, and existing parents are each named once, in that order (the lock order)", async (t) => {
  t.same(["10", "9", "100", "11"].sort(compareIds), ["9", "10", "11", "100"]);
  t.same(existingParents([{ dependsOn: ["10", "9"] }, { dependsOn: ["9", "100"], dependsOnIndex: [0] }, {}]), ["9", "10", "100"]);
  t.equal(hasAnyDependencies([{}, { dependsOn: [] }, { dependsOnIndex: [] }]), false);
  t.equal(hasAnyDependencies([{}, { dependsOnIndex: [0] }]), true);
});

t.test("planGraph: WAITING while a dependency has not succeeded, PENDING otherwise, DEAD-to-be for a failed one", async (t) => {
  const states = new Map<string, TaskState>([["1", "succeeded"], ["2", "running"], ["3", "dead"], ["4", "cancelled"], ["5", "waiting"], ["6", "pending"]]);
  const plan = planGraph(
    [
      {}, // 0: no dependencies
      { dependsOn: ["1"] }, // 1: its one parent succeeded
      { dependsOn: ["1", "2", "5", "6"] }, // 2: three unfinished
      { dependsOn: ["4", "3", "1"] }, // 3: two failed: the lower id is named
      { dependsOnIndex: [0, 1] }, // 4: tasks of the same submit are never finished
      { dependsOn: ["1"], dependsOnIndex: [4] }, // 5
    ],
    states,
  );
  t.same(plan.map((p) => [p.state, p.unmet]), [["pending", 0], ["pending", 0], ["waiting", 3], ["waiting", 2], ["waiting", 2], ["waiting", 1]]);
  t.same(plan.map((p) => p.hasDependencies), [false, true, true, true, true, true]);
  t.same(plan.map((p) => p.hasDependents), [true, true, false, false, true, false], "referenced by a later task's dependsOnIndex");
  t.same(plan.map((p) => p.failedParent), [null, null, null, { id: "3", state: "dead" }, null, null]);
  t.throws(() => planGraph([{ dependsOn: ["7"] }], states), /no state for dependency 7/, "every existing parent must have been read");
});

t.test("graphEdges resolves positions to the ids the insert gave", async (t) => {
  t.same(graphEdges([{}, { dependsOn: ["5"] }, { dependsOn: ["6"], dependsOnIndex: [0, 1] }], ["10", "11", "12"]), [
    ["11", "5"],
    ["12", "6"],
    ["12", "10"],
    ["12", "11"],
  ]);
});

t.test("the dependency-failed reason (the settle trigger writes the same text)", async (t) => {
  t.equal(dependencyFailedReason("12", "dead"), "dependency 12 ended DEAD");
  t.equal(dependencyFailedReason("7", "cancelled"), "dependency 7 ended CANCELLED");
});

t.test("planRetry: PENDING when all succeeded, WAITING while some are unfinished, refused for a failed or deleted one", async (t) => {
  const states = new Map<string, TaskState>([["1", "succeeded"], ["2", "running"], ["3", "dead"], ["4", "cancelled"], ["5", "waiting"]]);
  t.same(planRetry("9", ["1"], states), { ok: true, action: "retry", unmet: 0 });
  t.same(planRetry("9", ["1", "2", "5"], states), { ok: true, action: "retry_waiting", unmet: 2 });
  t.same(planRetry("9", ["2", "4", "3"], states), { ok: false, reason: "task 9 depends on task 3, which is DEAD; retry that task first" }, "the lowest failed id");
  t.same(planRetry("9", ["4"], states), { ok: false, reason: "task 9 depends on task 4, which is CANCELLED; retry that task first" });
  t.same(planRetry("9", ["1", "8"], states), { ok: false, reason: "task 9 depends on task 8, which no longer exists (deleted by retention); it cannot run again" });
  t.same(planRetry("9", ["1", "2"], states, new Set(["1"])), { ok: false, reason: "task 9 depends on task 1, which retention deletes within a minute (or already may); it cannot run again" }, "an expiring dependency");
  t.same(planRetry("9", ["3"], states, new Set(["3"])), { ok: false, reason: "task 9 depends on task 3, which is DEAD; retry that task first" }, "a failed one is named as failed first");
});

t.test("planKeyedGraph: held keys answer with their holder, repeated keys with the first occurrence, and dependents follow them", async (t) => {
  const jt = "j";
  const tasks = [
    { jobType: jt, idempotencyKey: "held", dependsOn: ["7"] }, // 0: its key is held by task 50; its own dependency no longer matters
    { jobType: jt, idempotencyKey: "new", dependsOnIndex: [0] }, // 1: new, depends on the holder
    { jobType: jt, idempotencyKey: "held", dependsOnIndex: [1] }, // 2: the key again: task 50 as well
    { jobType: jt, dependsOn: ["50"], dependsOnIndex: [0, 1, 2] }, // 3: names the holder directly too: once
    { jobType: "other", idempotencyKey: "held" }, // 4: another job type's key
    { jobType: jt, idempotencyKey: "new", dependsOnIndex: [3] }, // 5: repeats task 1's key
  ];
  const plan = planKeyedGraph(tasks, (i) => (tasks[i]!.jobType === jt && tasks[i]!.idempotencyKey === "held" ? "50" : undefined));
  t.same(plan.targets, [
    { kind: "existing", id: "50" },
    { kind: "new", index: 0 },
    { kind: "existing", id: "50" },
    { kind: "new", index: 1 },
    { kind: "new", index: 2 },
    { kind: "new", index: 0 },
  ]);
  t.same(plan.positions, [1, 3, 4], "the positions inserted, in order");
  t.same(plan.inserts.map((x) => [x.dependsOn, x.dependsOnIndex]), [[["50"], []], [["50"], [0]], [[], []]], "dependencies rewritten onto the holder and onto insert indexes, each once");
  t.same(plan.heldParents, ["50"], "the holder is depended on: it must be locked and flagged");
  t.same(planGraph(plan.inserts, new Map([["50", "running"]])).map((x) => [x.state, x.unmet, x.hasDependents]), [["waiting", 1, true], ["waiting", 2, false], ["pending", 0, false]]);
  const none = planKeyedGraph([{ jobType: jt, idempotencyKey: "k" }, { jobType: jt, dependsOnIndex: [0] }], () => undefined);
  t.same([none.positions, none.heldParents, none.inserts[1]!.dependsOnIndex], [[0, 1], [], [0]], "with no holders: every task is inserted as given");
});
