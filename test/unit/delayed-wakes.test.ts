/** Delayed wakes: every announced time gets its wake, in time order, whatever order they were announced in. */
import t from "tap";
import { DelayedWakes } from "../../src/dispatch/delayed-wakes.js";

// The wakes' timers are unref'd (they never keep a server alive); this keeps the test process up.
const keepAlive = setInterval(() => {}, 1_000);
t.teardown(() => clearInterval(keepAlive));

t.test("times announced out of order each wake their key, earliest first", async (t) => {
  const start = Date.now();
  const woken: { key: string; at: number }[] = [];
  let done: () => void;
  const allDone = new Promise<void>((resolve) => (done = resolve));
  const wakes = new DelayedWakes((key) => {
    woken.push({ key, at: Date.now() - start });
    if (woken.length === 4) done();
  });
  t.teardown(() => wakes.clear());
  wakes.add("a", start + 300); // announced first, due last
  wakes.add("a", start + 100); // an earlier one re-arms the timer
  wakes.add("a", start + 102); // within 5 ms of another: merged
  wakes.add("a", start + 200);
  wakes.add("b", start + 150);
  wakes.add("b", start - 50); // already due: wakes at once
  await allDone;
  t.same(woken.map((w) => w.key), ["b", "a", "b", "a", "a"].slice(0, 4), "b (due), a@100, b@150, a@200 ...");
  await new Promise((r) => setTimeout(r, 200));
  t.same(woken.map((w) => w.key), ["b", "a", "b", "a", "a"], "... then a@300; the merged time woke nobody twice");
  const lateness = [woken[1]!.at - 100, woken[2]!.at - 150, woken[3]!.at - 200, woken[4]!.at - 300];
  t.ok(lateness.every((ms) => ms >= 0), `never before its time (${lateness.join(", ")} ms after)`);
});

t.test("clear() cancels every pending wake", async (t) => {
  let woken = 0;
  const wakes = new DelayedWakes(() => woken++);
  wakes.add("a", Date.now() + 30);
  wakes.add("b", Date.now() + 40);
  wakes.clear();
  await new Promise((r) => setTimeout(r, 80));
  t.equal(woken, 0);
});
