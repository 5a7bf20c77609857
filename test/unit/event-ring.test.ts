import t from "tap";
import type { EventFilter, TaskEventRecord } from "../../src/core/task.js";
import { EventRing, eventSize, matchesFilter } from "../../src/events/event-ring.js";

const all: EventFilter = { taskIds: [], jobTypes: [], states: [] };

function event(seq: number, over: Partial<TaskEventRecord> = {}): TaskEventRecord {
  return {
    namespace: "default",
    seq: BigInt(seq),
    taskId: String(seq),
    jobType: seq % 2 === 0 ? "even" : "odd",
    kind: "state_changed",
    state: "pending",
    previousState: null,
    attempt: 0,
    progress: 0,
    progressMessage: "",
    error: null,
    workerId: null,
    actor: null,
    at: new Date(0),
    ...over,
  };
}
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => event(from + i));
const seqs = (r: ReturnType<EventRing["read"]>) => (r.kind === "events" ? r.events.map((e) => Number(e.seq)) : r.kind);

t.test("reads what follows a position, in order, and reports how far it got", async (t) => {
  const ring = new EventRing(10n, 1_000_000);
  ring.append(15n, range(11, 15));
  t.same(seqs(ring.read(10n, all, 100)), [11, 12, 13, 14, 15]);
  t.same(seqs(ring.read(12n, all, 100)), [13, 14, 15]);
  t.same(ring.read(12n, all, 2), { kind: "events", events: [event(13), event(14)], position: 14n }, "a full read stops at its last event");
  t.same(ring.read(15n, all, 100), { kind: "events", events: [], position: 15n });
  t.same(ring.read(20n, all, 100), { kind: "events", events: [], position: 20n }, "a position ahead of the ring stays where it is");
  t.same(ring.read(9n, all, 100), { kind: "behind" }, "a position before the ring must read the database");
});

t.test("filters, and skips what does not match without stopping early", async (t) => {
  const ring = new EventRing(0n, 1_000_000);
  ring.append(10n, range(1, 10));
  const even: EventFilter = { taskIds: [], jobTypes: ["even"], states: [] };
  t.same(seqs(ring.read(0n, even, 100)), [2, 4, 6, 8, 10]);
  t.same(ring.read(0n, { taskIds: ["3"], jobTypes: [], states: [] }, 100), { kind: "events", events: [event(3)], position: 10n });
  t.notOk(matchesFilter({ taskIds: [], jobTypes: [], states: ["running"] }, event(1)));
});

t.test("a range with gaps (events deleted with their tasks) still advances to its end", async (t) => {
  const ring = new EventRing(0n, 1_000_000);
  ring.append(10n, [event(2), event(7)]);
  t.same(ring.read(3n, all, 100), { kind: "events", events: [event(7)], position: 10n });
  ring.append(8n, [event(8)]);
  t.equal(ring.end, 10n, "an older range is ignored");
  ring.append(12n, [event(9), event(11), event(13)]);
  t.same(seqs(ring.read(10n, all, 100)), [11], "only events inside (end, to] are kept");
});

t.test("trims the oldest events beyond its size, moving its start", async (t) => {
  const lastThree = range(3, 5).reduce((sum, e) => sum + eventSize(e), 0);
  const ring = new EventRing(0n, lastThree);
  ring.append(5n, range(1, 5));
  t.same(ring.size, { events: 3, bytes: lastThree });
  t.equal(ring.start, 2n);
  t.same(ring.read(1n, all, 100), { kind: "behind" });
  t.same(seqs(ring.read(2n, all, 100)), [3, 4, 5]);
  const huge = event(6, { error: "x".repeat(10_000) });
  ring.append(6n, [huge]);
  t.same([ring.start, ring.end, ring.size.events], [6n, 6n, 0], "an event larger than the ring is passed over, never held");
  t.same(ring.read(6n, all, 100), { kind: "events", events: [], position: 6n });
});
