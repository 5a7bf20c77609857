import t from "tap";
import { type BackoffPolicy, DEFAULT_BACKOFF, backoffDelayMs } from "../../src/core/backoff.js";

const policy: BackoffPolicy = { baseMs: 1_000, capMs: 60_000 };
const low = () => 0;
const high = () => 1;

t.test("the default policy is 1 s doubling up to 10 minutes", async (t) => {
  t.same(DEFAULT_BACKOFF, { baseMs: 1_000, capMs: 600_000 });
});

t.test("the delay lies in [d/2, d] with d = min(cap, base * 2^(attempt-1))", async (t) => {
  const ceilings: [attempt: number, ceiling: number][] = [
    [1, 1_000],
    [2, 2_000],
    [3, 4_000],
    [6, 32_000],
    [7, 60_000], // 64 s, capped
    [50, 60_000],
  ];
  for (const [attempt, ceiling] of ceilings) {
    t.equal(backoffDelayMs(policy, attempt, low), ceiling / 2, `attempt ${attempt}, random 0`);
    t.equal(backoffDelayMs(policy, attempt, high), ceiling, `attempt ${attempt}, random 1`);
    t.equal(backoffDelayMs(policy, attempt, () => 0.5), (ceiling * 3) / 4, `attempt ${attempt}, random 0.5`);
  }
});

t.test("attempts below 1 count as the first", async (t) => {
  t.equal(backoffDelayMs(policy, 0, high), 1_000);
  t.equal(backoffDelayMs(policy, -5, high), 1_000);
});

t.test("huge attempt numbers stay finite and capped", async (t) => {
  for (const attempt of [53, 1_000, 1e9, Number.MAX_SAFE_INTEGER]) {
    t.equal(backoffDelayMs(policy, attempt, high), 60_000, `attempt ${attempt}`);
    t.equal(backoffDelayMs(DEFAULT_BACKOFF, attempt, low), 300_000, `attempt ${attempt}, default policy`);
  }
});

t.test("a zero base retries at once", async (t) => {
  t.equal(backoffDelayMs({ baseMs: 0, capMs: 60_000 }, 5, high), 0);
});

t.test("results are whole milliseconds", async (t) => {
  t.equal(backoffDelayMs({ baseMs: 3, capMs: 100 }, 1, () => 0.3), 2); // 1.5 + 0.45 = 1.95
  t.ok(Number.isInteger(backoffDelayMs(policy, 4, () => 0.123456)));
});

t.test("Math.random by default: within bounds", async (t) => {
  for (let i = 0; i < 200; i++) {
    const delay = backoffDelayMs(policy, 3);
    t.ok(delay >= 2_000 && delay <= 4_000, `${delay} in [2000, 4000]`);
  }
});
