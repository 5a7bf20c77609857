/**
 * Dependencies under concurrency, across two replicas on one database: children submitted (on one
 * replica) while their parents complete or fail (reported on the other), many at once. Whatever
 * the interleaving, no child may be left WAITING for a parent that already finished: each ends
 * PENDING when all its parents succeeded and DEAD when one failed.
 */
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import t, { type Test } from "tap";
import { TaskState } from "../../src/gen/taskwire/v1/task_pb.js";
import type { Assignment } from "../../src/gen/taskwire/v1/worker_pb.js";
import { jsonAny } from "../helpers/payload.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const a = await startTestServer(t);
const b = await startTestServer(t, { databaseUrl: a.databaseUrl });
const db = a.server.engine.database.db;

/** A small deterministic generator, so a failure can be replayed. */
function random(seed: number): () => number {
  let x = seed;
  return () => {
    x = (x * 1_103_515_245 + 12_345) % 2_147_483_648;
    return x / 2_147_483_648;
  };
}

/** Runs `tasks` with at most `width` in flight. */
async function concurrently(width: number, tasks: (() => Promise<unknown>)[]): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < tasks.length) await tasks[next++]!();
  }));
}

/**
 * One round: `parents` tasks are claimed; then, interleaved, each is reported (success unless
 * `fails(i)`) through replica A while `children` tasks naming 1 to 3 random parents (some also an
 * earlier child) are submitted through replica B, alone or in batches of up to 5.
 */
async function round(t: Test, label: string, options: { parents: number; children: number; seed: number; fails: (i: number) => boolean }) {
  const parentType = `race.${label}.parent`;
  const childType = `race.${label}.child`;
  await a.jobTypes.registerJobType({ name: parentType, defaultMaxAttempts: 1 });
  await a.jobTypes.registerJobType({ name: childType, retention: durationFromMs(0) });
  const { tasks: parents } = await a.tasks.submitBatch({ tasks: Array.from({ length: options.parents }, (_, i) => ({ jobType: parentType, input: jsonAny(i) })) });
  const claimed = new Map<string, Assignment>();
  while (claimed.size < options.parents) {
    for (const x of (await a.workers.claimTasks({ workerId: "w-race", jobTypes: [parentType], maxTasks: 1_000 })).assignments) claimed.set(x.taskId, x);
  }
  const rnd = random(options.seed);
  const failed = new Set(parents.filter((_, i) => options.fails(i)).map((p) => p.id));
  const children: { id: string; parents: string[] }[] = [];

  // Reports and submits shuffled together, run 32 at a time.
  const reports = parents.map((p, i) => async () => {
    const x = claimed.get(p.id)!;
    if (failed.has(p.id)) await a.workers.failTask({ failure: { taskId: x.taskId, attempt: x.attempt, leaseToken: x.leaseToken, error: `parent ${i} failed`, nonRetryable: true } });
    else await a.workers.completeTask({ completion: { taskId: x.taskId, attempt: x.attempt, leaseToken: x.leaseToken, output: jsonAny(i) } });
  });
  const submits: (() => Promise<void>)[] = [];
  for (let made = 0; made < options.children; ) {
    const size = Math.min(1 + Math.floor(rnd() * 5), options.children - made);
    made += size;
    const specs = Array.from({ length: size }, () => {
      const named = new Set<string>();
      const count = 1 + Math.floor(rnd() * 3);
      while (named.size < count) named.add(parents[Math.floor(rnd() * parents.length)]!.id);
      return [...named];
    });
    submits.push(async () => {
      const answer = size === 1
        ? [(await b.tasks.submit({ task: { jobType: childType, input: jsonAny(null), dependsOn: specs[0] } })).task!]
        : (await b.tasks.submitBatch({ tasks: specs.map((dependsOn) => ({ jobType: childType, input: jsonAny(null), dependsOn })) })).tasks;
      answer.forEach((task, i) => children.push({ id: task.id, parents: specs[i]! }));
    });
  }
  const all = [...reports, ...submits];
  for (let i = all.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  await concurrently(32, all);

  const rows = await db.query<{ id: string; state: string; unmet_dependencies: number; last_error: string | null }>(
    "SELECT id::text, state, unmet_dependencies, last_error FROM task WHERE job_type = $1",
    [childType],
  );
  t.equal(rows.length, options.children, `${label}: every child was created`);
  const byId = new Map(rows.map((r) => [r.id, r]));
  const wrong = children.filter((c) => {
    const row = byId.get(c.id)!;
    const expected = c.parents.some((p) => failed.has(p)) ? "dead" : "pending";
    return row.state !== expected || row.unmet_dependencies !== 0;
  });
  t.same(wrong.map((c) => ({ ...c, row: byId.get(c.id) })), [], `${label}: each child is PENDING (all parents succeeded) or DEAD (one failed), none left WAITING`);
  const deadNaming = children.filter((c) => byId.get(c.id)!.state === "dead").every((c) => {
    const named = /^dependency (\d+) ended DEAD$/.exec(byId.get(c.id)!.last_error ?? "")?.[1];
    return named !== undefined && failed.has(named) && c.parents.includes(named);
  });
  t.ok(deadNaming, `${label}: every DEAD child names one of its failed parents`);
  return { children, byId };
}

t.test("children submitted while their parents complete, across two replicas", async (t) => {
  const { byId } = await round(t, "succeed", { parents: 150, children: 300, seed: 1, fails: () => false });
  t.ok([...byId.values()].every((r) => r.state === "pending"), "all PENDING");
});

t.test("children submitted while their parents fail, across two replicas", async (t) => {
  const { byId } = await round(t, "fail", { parents: 150, children: 300, seed: 2, fails: () => true });
  t.ok([...byId.values()].every((r) => r.state === "dead"), "all DEAD");
});

t.test("mixed: a third of the parents fail", async (t) => {
  const { byId } = await round(t, "mixed", { parents: 150, children: 300, seed: 3, fails: (i) => i % 3 === 0 });
  const counts = { pending: 0, dead: 0 };
  for (const r of byId.values()) counts[r.state as "pending" | "dead"] += 1;
  t.ok(counts.pending > 0 && counts.dead > 0, `both outcomes occurred (${JSON.stringify(counts)})`);
});

t.test("retries of cancelled dependents while their parents complete, across two replicas: each ends PENDING", async (t) => {
  await a.jobTypes.registerJobType({ name: "race.retry.parent", defaultMaxAttempts: 1 });
  await a.jobTypes.registerJobType({ name: "race.retry.child" });
  const n = 150;
  const { tasks: parents } = await a.tasks.submitBatch({ tasks: Array.from({ length: n }, (_, i) => ({ jobType: "race.retry.parent", input: jsonAny(i) })) });
  const { tasks: children } = await a.tasks.submitBatch({ tasks: parents.map((p) => ({ jobType: "race.retry.child", input: jsonAny(null), dependsOn: [p.id] })) });
  for (const child of children) await a.tasks.cancel({ id: child.id });
  const claimed: Assignment[] = [];
  while (claimed.length < n) claimed.push(...(await a.workers.claimTasks({ workerId: "w-race", jobTypes: ["race.retry.parent"], maxTasks: 1_000 })).assignments);
  const rnd = random(4);
  const work = [
    ...claimed.map((x) => () => a.workers.completeTask({ completion: { taskId: x.taskId, attempt: x.attempt, leaseToken: x.leaseToken } })),
    ...children.map((c) => () => b.tasks.retry({ id: c.id })),
  ];
  for (let i = work.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [work[i], work[j]] = [work[j]!, work[i]!];
  }
  await concurrently(32, work);
  const rows = await db.query<{ state: string; n: string }>("SELECT state, count(*)::text AS n FROM task WHERE job_type = 'race.retry.child' GROUP BY state");
  t.same(rows, [{ state: "pending", n: String(n) }], "every retried child is PENDING: none waits for a parent that already succeeded");
});
