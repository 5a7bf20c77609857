/** Idempotency keys: a duplicate Submit returns the task holding the key, marked deduplicated; races are settled by the unique index. */
import { create, createFileRegistry } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { durationFromMs, FieldDescriptorProto_Label, FieldDescriptorProto_Type, FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import t from "tap";
import { payloadKey } from "../../src/core/payload-hash.js";
import { TaskState } from "../../src/gen/taskwire/v1/task_pb.js";
import { anyJson, jsonAny } from "../helpers/payload.js";
import { rejection } from "../helpers/rejection.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const a = await startTestServer(t);
const b = await startTestServer(t, { databaseUrl: a.databaseUrl });
const db = a.server.engine.database.db;
const rows = async (sql: string, values: unknown[] = []) => db.query<Record<string, string>>(sql, values);

await a.jobTypes.registerJobType({ name: "idem" });
await a.jobTypes.registerJobType({ name: "idem.other" });
await a.jobTypes.registerJobType({ name: "idem.window", dedupWindow: durationFromMs(1_500) });

/** How many tasks and dependency edges the database holds. */
const taskAndEdgeCount = async () => (await rows("SELECT (SELECT count(*) FROM task)::text AS tasks, (SELECT count(*) FROM task_dependency)::text AS edges"))[0];

/** Claims and completes the task (unary worker calls). */
async function finish(s: TestServer, jobType: string, id: string): Promise<void> {
  const claimed = (await s.workers.claimTasks({ workerId: "w-idem", jobTypes: [jobType], maxTasks: 1_000 })).assignments;
  const mine = claimed.find((x) => x.taskId === id);
  if (mine === undefined) throw new Error(`task ${id} was not claimable`);
  await Promise.all(claimed.map((x) => s.workers.completeTask({ completion: { taskId: x.taskId, attempt: x.attempt, leaseToken: x.leaseToken } })));
}

t.test("a duplicate Submit returns the existing task, deduplicated, whatever its input and settings", async (t) => {
  const first = (await a.tasks.submit({ task: { jobType: "idem", input: jsonAny({ n: 1 }), idempotencyKey: "order-1" } })).task!;
  t.equal(first.deduplicated, false, "the first submit created the task");
  t.equal(first.idempotencyKey, "order-1");
  const again = (await a.tasks.submit({ task: { jobType: "idem", input: jsonAny({ n: 2 }), idempotencyKey: "order-1", priority: 9 } })).task!;
  t.equal(again.id, first.id, "same task");
  t.equal(again.deduplicated, true);
  t.same(anyJson(again.input), { n: 1 }, "the existing task as it is: the first input");
  t.equal(again.priority, 0, "and its own settings");
  const got = (await a.tasks.getTask({ id: first.id })).task!;
  t.equal(got.deduplicated, false, "deduplicated is only set in Submit answers");
  t.equal(got.idempotencyKey, "order-1", "GetTask shows the key");
  const other = (await a.tasks.submit({ task: { jobType: "idem.other", input: jsonAny({ n: 1 }), idempotencyKey: "order-1" } })).task!;
  t.not(other.id, first.id, "keys are per job type");
  const [created] = await rows("SELECT count(*)::text AS n FROM task_event WHERE task_id = $1 AND kind = 'created'", [first.id]);
  t.equal(created!.n, "1", "the duplicate wrote no event");
  const plain = (await a.tasks.submit({ task: { jobType: "idem", input: jsonAny(null) } })).task!;
  t.equal(plain.idempotencyKey, "", "no key: none shown");
  t.equal(plain.deduplicated, false);
});

t.test("50 concurrent duplicate submits, across two replicas: one task", async (t) => {
  for (const [label, servers] of [["one replica", [a]], ["two replicas", [a, b]]] as const) {
    const key = `race-${label}`;
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) => servers[i % servers.length]!.tasks.submit({ task: { jobType: "idem", input: jsonAny({ i }), idempotencyKey: key } })),
    );
    const ids = new Set(answers.map((x) => x.task!.id));
    t.equal(ids.size, 1, `${label}: every answer names the same task`);
    t.equal(answers.filter((x) => !x.task!.deduplicated).length, 1, `${label}: exactly one answer created it`);
    const [count] = await rows("SELECT count(*)::text AS n FROM task WHERE idempotency_key = $1", [key]);
    t.equal(count!.n, "1", `${label}: one row in the database`);
  }
});

t.test("a finished holder past its dedup window, 50 concurrent submits of its key across two replicas: one new task", async (t) => {
  for (let round = 0; round < 3; round++) {
    const key = `expired-race-${round}`;
    const old = (await a.tasks.submit({ task: { jobType: "idem.window", input: jsonAny("old"), idempotencyKey: key } })).task!;
    await finish(a, "idem.window", old.id);
    // Finished an hour ago: far past the 1.5 s window, so every submit below may release it.
    await rows("UPDATE task SET finished_at = now() - interval '1 hour' WHERE id = $1", [old.id]);
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) => [a, b][i % 2]!.tasks.submit({ task: { jobType: "idem.window", input: jsonAny({ i }), idempotencyKey: key } })),
    );
    const ids = new Set(answers.map((x) => x.task!.id));
    t.equal(ids.size, 1, `round ${round}: every answer names the same task`);
    t.not([...ids][0], old.id, `round ${round}: a new one, not the expired holder`);
    t.equal(answers.filter((x) => !x.task!.deduplicated).length, 1, `round ${round}: exactly one answer created it; 49 are marked deduplicated`);
    const [count] = await rows("SELECT count(*)::text AS n, count(*) FILTER (WHERE NOT key_released)::text AS holding FROM task WHERE job_type = 'idem.window' AND idempotency_key = $1", [key]);
    t.same(count, { n: "2", holding: "1" }, `round ${round}: two rows with the key (the old one released), one holding it`);
  }
});

t.test("the key is free again once the task finishes (no dedup window)", async (t) => {
  const first = (await a.tasks.submit({ task: { jobType: "idem.other", input: jsonAny(1), idempotencyKey: "again" } })).task!;
  await finish(a, "idem.other", first.id);
  const second = (await a.tasks.submit({ task: { jobType: "idem.other", input: jsonAny(2), idempotencyKey: "again" } })).task!;
  t.not(second.id, first.id, "a new task");
  t.equal(second.deduplicated, false);
  t.equal((await a.tasks.getTask({ id: first.id })).task!.idempotencyKey, "again", "the finished task still shows its key");
  t.equal((await a.tasks.submit({ task: { jobType: "idem.other", input: jsonAny(3), idempotencyKey: "again" } })).task!.id, second.id, "the new task holds it now");
});

t.test("with a dedup window, a finished task keeps its key for that long", async (t) => {
  const first = (await a.tasks.submit({ task: { jobType: "idem.window", input: jsonAny(1), idempotencyKey: "w" } })).task!;
  await finish(a, "idem.window", first.id);
  const within = (await a.tasks.submit({ task: { jobType: "idem.window", input: jsonAny(2), idempotencyKey: "w" } })).task!;
  t.equal(within.id, first.id, "within the window: the finished task");
  t.equal(within.state, TaskState.SUCCEEDED);
  t.equal(within.deduplicated, true);
  await new Promise((r) => setTimeout(r, 1_600));
  const after = (await a.tasks.submit({ task: { jobType: "idem.window", input: jsonAny(3), idempotencyKey: "w" } })).task!;
  t.not(after.id, first.id, "after the window: a new task");
  t.equal(after.deduplicated, false);
});

t.test("SubmitBatch: keys repeated within the batch, keys already held, and tasks without keys, in order", async (t) => {
  const held = (await a.tasks.submit({ task: { jobType: "idem", input: jsonAny("held"), idempotencyKey: "b-held" } })).task!;
  const { tasks } = await a.tasks.submitBatch({
    tasks: [
      { jobType: "idem", input: jsonAny(0) },
      { jobType: "idem", input: jsonAny(1), idempotencyKey: "b-new" },
      { jobType: "idem", input: jsonAny(2), idempotencyKey: "b-held" },
      { jobType: "idem", input: jsonAny(3) },
      { jobType: "idem", input: jsonAny(4), idempotencyKey: "b-new" },
      { jobType: "idem.other", input: jsonAny(5), idempotencyKey: "b-new" },
    ],
  });
  t.same(tasks.map((x) => anyJson(x.input)), [0, 1, "held", 3, 1, 5], "each answer in the order submitted; duplicates show the holder's input");
  t.same(tasks.map((x) => x.deduplicated), [false, false, true, false, true, false]);
  t.equal(tasks[2]!.id, held.id, "an existing holder");
  t.equal(tasks[4]!.id, tasks[1]!.id, "a key repeated in the batch gets the first occurrence's task");
  t.ok(BigInt(tasks[0]!.id) < BigInt(tasks[1]!.id) && BigInt(tasks[1]!.id) < BigInt(tasks[3]!.id), "created tasks keep batch order (FIFO)");
  const [count] = await rows("SELECT count(*)::text AS n FROM task WHERE id = ANY($1::bigint[])", [tasks.map((x) => x.id)]);
  t.equal(count!.n, "5", "five distinct tasks (one is the earlier holder)");

  const bad = await rejection(() =>
    a.tasks.submitBatch({ tasks: [{ jobType: "idem", input: jsonAny(1), idempotencyKey: "b-atomic" }, { jobType: "idem", input: jsonAny(2), idempotencyKey: "x".repeat(257) }] }),
  );
  t.equal(bad.code, Code.InvalidArgument);
  const [none] = await rows("SELECT count(*)::text AS n FROM task WHERE idempotency_key = 'b-atomic'");
  t.equal(none!.n, "0", "all or nothing: nothing was created");
});

t.test("concurrent batches taking the same keys in opposite orders: no error, one task per key", async (t) => {
  const keys = Array.from({ length: 20 }, (_, i) => `cross-${i}`);
  const batch = (order: string[]) => ({ tasks: order.map((key) => ({ jobType: "idem", input: jsonAny(key), idempotencyKey: key })) });
  const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => (i % 2 === 0 ? a : b).tasks.submitBatch(batch(i % 2 === 0 ? keys : [...keys].reverse()))));
  const byKey = new Map<string, Set<string>>();
  for (const answer of answers) for (const task of answer.tasks) byKey.set(task.idempotencyKey, (byKey.get(task.idempotencyKey) ?? new Set()).add(task.id));
  t.equal(byKey.size, 20);
  t.ok([...byKey.values()].every((ids) => ids.size === 1), "every answer for a key names one task");
  const [count] = await rows("SELECT count(*)::text AS n FROM task WHERE idempotency_key LIKE 'cross-%'");
  t.equal(count!.n, "20");
});

t.test("dedup_by_payload: equal JSON (any key order) is one task, different JSON another", async (t) => {
  const submit = (value: Parameters<typeof jsonAny>[0]) => a.tasks.submit({ task: { jobType: "idem", input: jsonAny(value), dedupByPayload: true } });
  const first = (await submit({ user: 7, items: [1, 2], note: { x: true, y: null } })).task!;
  t.match(first.idempotencyKey, /^payload-sha256:[0-9a-f]{64}$/);
  const reordered = (await submit({ note: { y: null, x: true }, items: [1, 2], user: 7 })).task!;
  t.equal(reordered.id, first.id, "same JSON value, other key order: the same task");
  t.equal(reordered.deduplicated, true);
  const different = (await submit({ user: 7, items: [2, 1], note: { x: true, y: null } })).task!;
  t.not(different.id, first.id, "a different value: another task");
  const racing = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).tasks.submit({ task: { jobType: "idem", input: jsonAny({ race: [1, { k: "v" }] }), dedupByPayload: true } })));
  t.equal(new Set(racing.map((x) => x.task!.id)).size, 1, "concurrent equal payloads: one task");
});

t.test("dedup_by_payload of a typed job type: the canonical form follows its registered descriptors", async (t) => {
  // test.Tally { map<string, int32> counts = 1; string note = 2; }, written by hand.
  const descriptors = create(FileDescriptorSetSchema, {
    file: [
      {
        name: "test/tally.proto",
        package: "test",
        syntax: "proto3",
        messageType: [
          {
            name: "Tally",
            field: [
              { name: "counts", number: 1, label: FieldDescriptorProto_Label.REPEATED, type: FieldDescriptorProto_Type.MESSAGE, typeName: ".test.Tally.CountsEntry", jsonName: "counts" },
              { name: "note", number: 2, label: FieldDescriptorProto_Label.OPTIONAL, type: FieldDescriptorProto_Type.STRING, jsonName: "note" },
            ],
            nestedType: [
              {
                name: "CountsEntry",
                field: [
                  { name: "key", number: 1, label: FieldDescriptorProto_Label.OPTIONAL, type: FieldDescriptorProto_Type.STRING, jsonName: "key" },
                  { name: "value", number: 2, label: FieldDescriptorProto_Label.OPTIONAL, type: FieldDescriptorProto_Type.INT32, jsonName: "value" },
                ],
                options: { mapEntry: true },
              },
            ],
          },
        ],
      },
    ],
  });
  /** A Tally with these map entries in this wire order (as Go's random map order may write them), and optionally an explicit empty note. */
  const tally = (entries: [string, number][], emptyNote = false) => {
    const w = new BinaryWriter();
    for (const [key, value] of entries) w.tag(1, WireType.LengthDelimited).bytes(new BinaryWriter().tag(1, WireType.LengthDelimited).string(key).tag(2, WireType.Varint).int32(value).finish());
    if (emptyNote) w.tag(2, WireType.LengthDelimited).string("");
    return { typeUrl: "type.googleapis.com/test.Tally", value: w.finish() };
  };
  const ab = tally([["a", 1], ["b", 2]]);
  const variants = [ab, tally([["b", 2], ["a", 1]]), tally([["a", 1], ["b", 2]], true), tally([["b", 2], ["a", 1]], true)];
  const submit = (s: TestServer, input: { typeUrl: string; value: Uint8Array }) => s.tasks.submit({ task: { jobType: "idem.typed", input, dedupByPayload: true } });

  // By type name only, the server cannot decode the payload: only identical bytes match.
  await a.jobTypes.registerJobType({ name: "idem.typed", inputType: "test.Tally" });
  const raw = await Promise.all(variants.slice(0, 2).map((v) => submit(a, v)));
  t.not(raw[0]!.task!.idempotencyKey, raw[1]!.task!.idempotencyKey, "without descriptors, other map orders are other keys");

  await a.jobTypes.registerJobType({ name: "idem.typed", inputType: "test.Tally", descriptors });
  b.server.engine.jobTypes.forget("default", "idem.typed"); // as the registration's notification does, without waiting for it
  const answers = [];
  for (let round = 0; round < 3; round++) for (const [i, v] of variants.entries()) answers.push((await submit([a, b][(round + i) % 2]!, v)).task!);
  const keys = new Set(answers.map((x) => x.idempotencyKey));
  t.equal(keys.size, 1, "with its descriptors: one key for every map order and an explicit default, every time, on either replica");
  t.equal([...keys][0], payloadKey(ab, createFileRegistry(descriptors)), "the key is the pure function of the payload and those descriptors");
  t.equal(new Set(answers.map((x) => x.id)).size, 1, "so all twelve submits are one task");
  t.not(answers[0]!.id, raw[0]!.task!.id, "across the descriptor change the same bytes got another key: the task from before is not found (the documented limit)");
});

t.test("validation of keys and dedup windows: codes and messages", async (t) => {
  const cases: [string, () => Promise<unknown>, RegExp][] = [
    ["a key of 257 characters", () => a.tasks.submit({ task: { jobType: "idem", input: jsonAny(1), idempotencyKey: "k".repeat(257) } }), /task\.idempotency_key: is 257 characters; allowed: 1 to 256/],
    ["a key with a control character", () => a.tasks.submit({ task: { jobType: "idem", input: jsonAny(1), idempotencyKey: "a\nb" } }), /task\.idempotency_key: contains a control character/],
    ["a key in the reserved payload namespace", () => a.tasks.submit({ task: { jobType: "idem", input: jsonAny(1), idempotencyKey: "payload-sha256:abc" } }), /task\.idempotency_key: starts with "payload-sha256:", which is reserved/],
    ["a key and dedup_by_payload together", () => a.tasks.submit({ task: { jobType: "idem", input: jsonAny(1), idempotencyKey: "k", dedupByPayload: true } }), /task\.dedup_by_payload: is set together with idempotency_key/],
    ["a bad key inside a batch names its index", () => a.tasks.submitBatch({ tasks: [{ jobType: "idem", input: jsonAny(1) }, { jobType: "idem", input: jsonAny(1), idempotencyKey: "\u0000" }] }), /tasks\[1\]\.idempotency_key: contains a control character/],
    ["a dedup window under 1 s", () => a.jobTypes.registerJobType({ name: "idem.bad", dedupWindow: durationFromMs(999) }), /dedup_window: is 999 ms; allowed: 1000 ms to 2592000000 ms/],
    ["a dedup window over 30 days", () => a.jobTypes.registerJobType({ name: "idem.bad", dedupWindow: durationFromMs(2_592_000_001), retention: durationFromMs(0) }), /dedup_window: is 2592000001 ms; allowed: 1000 ms to 2592000000 ms/],
    ["a dedup window longer than the retention", () => a.jobTypes.registerJobType({ name: "idem.bad", dedupWindow: durationFromMs(10_000), retention: durationFromMs(5_000) }), /dedup_window: is 10000 ms, longer than the retention \(5000 ms\)/],
  ];
  for (const [label, call, message] of cases) {
    const error = await rejection(call);
    t.equal(error.code, Code.InvalidArgument, `${label}: INVALID_ARGUMENT`);
    t.match(error.message, message, label);
  }
  t.equal((await a.tasks.submit({ task: { jobType: "idem", input: jsonAny(1), idempotencyKey: "k".repeat(256) } })).task!.idempotencyKey.length, 256, "256 characters are allowed");
  t.equal((await a.jobTypes.registerJobType({ name: "idem.zero", dedupWindow: durationFromMs(0) })).jobType!.dedupWindow, undefined, "a window of 0 is none");
  t.equal((await a.jobTypes.registerJobType({ name: "idem.keep", dedupWindow: durationFromMs(2_592_000_000), retention: durationFromMs(0) })).jobType!.dedupWindow?.seconds, 2_592_000n, "30 days with keep-forever retention");
  const [jt] = await rows("SELECT count(*)::text AS n FROM job_type WHERE name = 'idem.bad'");
  t.equal(jt!.n, "0", "no rejected job type was written");
});

t.test("Retry takes the task's key back, and is refused while a newer task holds it", async (t) => {
  const submit = (n: number) => a.tasks.submit({ task: { jobType: "idem", input: jsonAny(n), idempotencyKey: "retry-1" } });
  const unfinished = async () => (await rows("SELECT id::text AS id FROM task WHERE idempotency_key = 'retry-1' AND finished_at IS NULL ORDER BY id")).map((r) => r.id);
  const first = (await submit(1)).task!;
  await a.tasks.cancel({ id: first.id });
  const second = (await submit(2)).task!;
  t.not(second.id, first.id, "the first finished (no dedup window), so the key went to a new task");

  const refused = await rejection(() => b.tasks.retry({ id: first.id }));
  t.equal(refused.code, Code.FailedPrecondition);
  t.match(refused.message, new RegExp(`task ${first.id}: cannot retry: its idempotency key "retry-1" is held by task ${second.id} \\(PENDING\\)`), "the message names the holder");
  t.equal((await a.tasks.getTask({ id: first.id })).task!.state, TaskState.CANCELLED, "the refused task is unchanged");
  t.same(await unfinished(), [second.id], "one unfinished task with the key");
  t.equal((await submit(3)).task!.id, second.id, "and the key still leads to it");

  await a.tasks.cancel({ id: second.id });
  const retried = (await b.tasks.retry({ id: first.id })).task!;
  t.equal(retried.state, TaskState.PENDING, "once the holder finished, the retry goes through");
  const again = (await submit(4)).task!;
  t.equal(again.id, first.id, "and the retried task holds its key again");
  t.equal(again.deduplicated, true);
  t.same(await unfinished(), [first.id]);
});

t.test("Retry racing a Submit of the same key, on two replicas: never two unfinished tasks with it", async (t) => {
  for (let round = 0; round < 10; round++) {
    const key = `retry-race-${round}`;
    const first = (await a.tasks.submit({ task: { jobType: "idem", input: jsonAny(round), idempotencyKey: key } })).task!;
    await a.tasks.cancel({ id: first.id });
    const [retry, submit] = await Promise.allSettled([b.tasks.retry({ id: first.id }), a.tasks.submit({ task: { jobType: "idem", input: jsonAny(round), idempotencyKey: key } })]);
    if (submit.status === "rejected") throw submit.reason;
    const holders = await rows("SELECT id::text AS id FROM task WHERE idempotency_key = $1 AND finished_at IS NULL", [key]);
    t.equal(holders.length, 1, `round ${round}: one unfinished task with the key`);
    if (retry.status === "fulfilled") {
      t.equal(submit.value.task!.id, first.id, `round ${round}: the retry won; the submit got the retried task`);
      t.equal(submit.value.task!.deduplicated, true);
    } else {
      t.equal(submit.value.task!.deduplicated, false, `round ${round}: the submit won with a new task`);
      t.match(String(retry.reason), new RegExp(`held by task ${submit.value.task!.id}`), `round ${round}: the retry was refused naming it`);
    }
  }
});

t.test("keys with dependencies: a duplicate Submit with depends_on returns the first task, whatever it names", async (t) => {
  const parent = (await a.tasks.submit({ task: { jobType: "idem", input: jsonAny("parent") } })).task!;
  const first = (await a.tasks.submit({ task: { jobType: "idem", input: jsonAny(1), idempotencyKey: "dep-1", dependsOn: [parent.id] } })).task!;
  t.equal(first.deduplicated, false);
  t.equal(first.state, TaskState.WAITING, "it waits for its dependency");
  t.same(first.dependsOn, [parent.id]);
  const again = (await b.tasks.submit({ task: { jobType: "idem", input: jsonAny(2), idempotencyKey: "dep-1", dependsOn: [parent.id] } })).task!;
  t.equal(again.id, first.id, "a client's retry gets the same task");
  t.equal(again.deduplicated, true);
  const other = (await a.tasks.submit({ task: { jobType: "idem", input: jsonAny(3), idempotencyKey: "dep-1", dependsOn: ["999999"] } })).task!;
  t.equal(other.id, first.id, "the key alone decides: its dependencies are not even checked");
  const [counts] = await rows("SELECT (SELECT count(*) FROM task WHERE idempotency_key = 'dep-1')::text AS tasks, (SELECT count(*) FROM task_dependency WHERE parent_id = $1)::text AS edges", [parent.id]);
  t.same(counts, { tasks: "1", edges: "1" }, "one task, one edge");
});

t.test("keys with dependencies: a graph submitted again returns the same tasks and writes nothing", async (t) => {
  const parent = (await a.tasks.submit({ task: { jobType: "idem", input: jsonAny("root") } })).task!;
  const graph = {
    tasks: [
      { jobType: "idem", input: jsonAny("a"), idempotencyKey: "g-a", dependsOn: [parent.id] },
      { jobType: "idem", input: jsonAny("b"), idempotencyKey: "g-b", dependsOnIndex: [0] },
      { jobType: "idem.other", input: jsonAny("c"), idempotencyKey: "g-a", dependsOnIndex: [0, 1] },
      { jobType: "idem", input: jsonAny("a again"), idempotencyKey: "g-a" },
    ],
  };
  const first = (await a.tasks.submitBatch(graph)).tasks;
  t.same(first.map((x) => x.deduplicated), [false, false, false, true], "the key repeated in the batch is its first occurrence's task");
  t.equal(first[3]!.id, first[0]!.id);
  t.same(first[2]!.dependsOn, [first[0]!.id, first[1]!.id]);
  const before = await taskAndEdgeCount();
  for (const s of [a, b]) {
    const again = (await s.tasks.submitBatch(graph)).tasks;
    t.same(again.map((x) => x.id), first.map((x) => x.id), "the same tasks, in order");
    t.ok(again.every((x) => x.deduplicated), "all deduplicated");
    t.same(again.map((x) => x.dependsOn), first.map((x) => x.dependsOn), "as they are");
  }
  t.same(await taskAndEdgeCount(), before, "no new task, no new edge");
});

t.test("keys with dependencies: a dependent of a deduplicated task depends on the task holding the key", async (t) => {
  await a.jobTypes.registerJobType({ name: "idem.deps", dedupWindow: durationFromMs(60_000) });
  const holder = (await a.tasks.submit({ task: { jobType: "idem.deps", input: jsonAny("held"), idempotencyKey: "h-1" } })).task!;
  const batch = (await b.tasks.submitBatch({
    tasks: [
      { jobType: "idem.deps", input: jsonAny("root"), idempotencyKey: "h-1" },
      { jobType: "idem.deps", input: jsonAny("child"), idempotencyKey: "h-child", dependsOnIndex: [0] },
      { jobType: "idem.deps", input: jsonAny("leaf"), dependsOnIndex: [1] },
    ],
  })).tasks;
  t.equal(batch[0]!.id, holder.id, "the root is the holder");
  t.equal(batch[0]!.deduplicated, true);
  t.same(batch[1]!.dependsOn, [holder.id], "the child depends on it");
  t.equal(batch[1]!.state, TaskState.WAITING, "and waits, as the holder is PENDING");
  t.same(batch[2]!.dependsOn, [batch[1]!.id]);
  await finish(a, "idem.deps", holder.id);
  t.equal((await a.tasks.getTask({ id: batch[1]!.id })).task!.state, TaskState.PENDING, "the holder's completion moved the child on (it was flagged as having dependents)");

  // A holder that already SUCCEEDED (within its dedup window): its new dependent starts PENDING.
  const second = (await a.tasks.submitBatch({
    tasks: [
      { jobType: "idem.deps", input: jsonAny("root"), idempotencyKey: "h-1" },
      { jobType: "idem.deps", input: jsonAny("late child"), dependsOnIndex: [0] },
    ],
  })).tasks;
  t.equal(second[0]!.id, holder.id);
  t.equal(second[0]!.state, TaskState.SUCCEEDED);
  t.equal(second[1]!.state, TaskState.PENDING, "a dependent of a SUCCEEDED holder is ready at once");
  const claimed = (await a.workers.claimTasks({ workerId: "w-idem", jobTypes: ["idem.deps"], maxTasks: 10 })).assignments.find((x) => x.taskId === second[1]!.id);
  t.same(claimed?.parents.map((p) => p.taskId), [holder.id], "and gets the holder's output");
});

t.test("keys with dependencies: concurrent duplicates on two replicas make one task, or one graph", async (t) => {
  const parent = (await a.tasks.submit({ task: { jobType: "idem", input: jsonAny("p") } })).task!;
  const single = await Promise.all(
    Array.from({ length: 30 }, (_, i) => [a, b][i % 2]!.tasks.submit({ task: { jobType: "idem", input: jsonAny(i), idempotencyKey: "dep-race", dependsOn: [parent.id] } })),
  );
  t.equal(new Set(single.map((x) => x.task!.id)).size, 1, "every answer names one task");
  t.equal(single.filter((x) => !x.task!.deduplicated).length, 1, "one answer created it");
  t.equal((await rows("SELECT count(*)::text AS n FROM task WHERE idempotency_key = 'dep-race'"))[0]!.n, "1");

  const graph = (round: number) => ({
    tasks: [
      { jobType: "idem", input: jsonAny(round), idempotencyKey: "race-g-a", dependsOn: [parent.id] },
      { jobType: "idem", input: jsonAny(round), idempotencyKey: "race-g-b", dependsOnIndex: [0] },
      { jobType: "idem", input: jsonAny(round), idempotencyKey: "race-g-c", dependsOnIndex: [0, 1] },
    ],
  });
  const batches = await Promise.all(Array.from({ length: 12 }, (_, i) => [a, b][i % 2]!.tasks.submitBatch(graph(i))));
  t.equal(new Set(batches.map((x) => x.tasks.map((task) => task.id).join())).size, 1, "every answer names the same three tasks");
  t.equal(batches.filter((x) => x.tasks.some((task) => !task.deduplicated)).length, 1, "one answer created them");
  const [count] = await rows("SELECT count(*)::text AS n, sum((SELECT count(*) FROM task_dependency d WHERE d.child_id = t.id))::text AS edges FROM task t WHERE idempotency_key LIKE 'race-g-%'");
  t.same(count, { n: "3", edges: "4" }, "three tasks, four edges");
});

t.test("a key still taken after the bounded rounds: UNAVAILABLE, and nothing of the submit is written", async (t) => {
  // Fault injection in the database: every insert of this key is skipped as if a concurrent submit
  // had just taken it, yet no holder is ever found, so each round starts over.
  await db.query(`CREATE FUNCTION test_always_taken() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$`);
  await db.query(`CREATE TRIGGER test_always_taken BEFORE INSERT ON task FOR EACH ROW WHEN (new.idempotency_key = 'always-taken') EXECUTE FUNCTION test_always_taken()`);
  t.teardown(async () => {
    await db.query("DROP TRIGGER test_always_taken ON task");
    await db.query("DROP FUNCTION test_always_taken()");
  });
  const parent = (await a.tasks.submit({ task: { jobType: "idem", input: jsonAny("contended root") } })).task!;
  const before = await taskAndEdgeCount();

  const single = await rejection(() => a.tasks.submit({ task: { jobType: "idem", input: jsonAny(1), idempotencyKey: "always-taken" } }));
  t.equal(single.code, Code.Unavailable, "a keyed Submit: UNAVAILABLE");
  t.match(single.message, /concurrent submits kept taking 1 of this submit's idempotency key\(s\) \(5 rounds\); nothing was written, retry it/);

  const batch = await rejection(() =>
    a.tasks.submitBatch({ tasks: [{ jobType: "idem", input: jsonAny("free") }, { jobType: "idem", input: jsonAny(2), idempotencyKey: "always-taken" }] }),
  );
  t.equal(batch.code, Code.Unavailable, "a SubmitBatch with a task without a key beside it: UNAVAILABLE");

  const graph = await rejection(() =>
    b.tasks.submitBatch({
      tasks: [
        { jobType: "idem", input: jsonAny("child"), idempotencyKey: "always-taken", dependsOn: [parent.id] },
        { jobType: "idem", input: jsonAny("grandchild"), dependsOnIndex: [0] },
      ],
    }),
  );
  t.equal(graph.code, Code.Unavailable, "a graph with dependencies: UNAVAILABLE");
  t.match(graph.message, /concurrent submits kept taking this submit's idempotency keys \(10 rounds\); nothing was written, retry it/);

  // (The parent's has_dependents hint is committed before the graph's transaction by design, see
  // withLockedDependencies: a hint with no dependent behind it costs its finish one empty lookup.)
  t.same(await taskAndEdgeCount(), before, "no task and no edge was written");
});
