/** The limits' arithmetic: the rate bound is never exceeded and always frees up; claims go round-robin within every cap. */
import fc from "fast-check";
import t from "tap";
import {
  claimAllowance,
  hasLimits,
  planLimitedClaim,
  rateAllowance,
  rateBucketMs,
  rateWaitMs,
  type ClaimGroup,
  type StartBucket,
} from "../../src/core/claim-limits.js";

/** Records `n` starts at `atMs` the way the claim statement does: into the bucket of atMs. */
function record(buckets: StartBucket[], windowMs: number, atMs: number, n: number): void {
  if (n === 0) return;
  const width = rateBucketMs(windowMs);
  const endsAtMs = Math.floor(atMs / width) * width + width;
  const same = buckets.find((b) => b.endsAtMs === endsAtMs);
  if (same !== undefined) same.starts += n;
  else buckets.push({ endsAtMs, starts: n });
}

t.test("hasLimits: any one limit, 0 included, makes a job type limited", async (t) => {
  t.equal(hasLimits({ rateLimit: null, maxRunning: null, maxRunningPerKey: null }), false);
  t.equal(hasLimits({ rateLimit: { maxStarts: 0, windowMs: 1_000 }, maxRunning: null, maxRunningPerKey: null }), true);
  t.equal(hasLimits({ rateLimit: null, maxRunning: 0, maxRunningPerKey: null }), true);
  t.equal(hasLimits({ rateLimit: null, maxRunning: null, maxRunningPerKey: 0 }), true);
});

t.test("buckets are a hundredth of the window, whole milliseconds, at least 1 ms", async (t) => {
  t.equal(rateBucketMs(1_000), 10);
  t.equal(rateBucketMs(60_000), 600);
  t.equal(rateBucketMs(1_050), 11);
  t.equal(rateBucketMs(86_400_000), 864_000);
});

t.test("rate allowance and wait, by hand", async (t) => {
  const rate = { maxStarts: 3, windowMs: 1_000 };
  const buckets: StartBucket[] = [];
  t.equal(rateAllowance(rate, buckets, 10_000), 3, "nothing started: all three");
  record(buckets, 1_000, 10_005, 2); // bucket [10000, 10010)
  t.equal(rateAllowance(rate, buckets, 10_005), 1);
  t.equal(rateWaitMs(rate, buckets, 10_005), 0, "one start left: no wait");
  record(buckets, 1_000, 10_500, 1); // bucket [10500, 10510)
  t.equal(rateAllowance(rate, buckets, 10_500), 0);
  t.equal(rateWaitMs(rate, buckets, 10_500), 10_010 + 1_000 - 10_500, "the first bucket's end must leave the window: at 11010");
  t.equal(rateAllowance(rate, buckets, 11_009), 0, "a moment before, still none");
  t.equal(rateAllowance(rate, buckets, 11_010), 2, "then the first bucket's two starts no longer count");
  t.equal(rateWaitMs({ maxStarts: 0, windowMs: 1_000 }, [], 0), null, "max_starts 0: never");
  t.equal(rateAllowance({ maxStarts: 0, windowMs: 1_000 }, [], 0), 0);
});

t.test("property: claims that follow rateAllowance never start more than maxStarts in any window, and rateWaitMs says when one may start", async (t) => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 20 }),
      fc.integer({ min: 1_000, max: 5_000 }),
      fc.array(fc.record({ gap: fc.integer({ min: 0, max: 700 }), want: fc.integer({ min: 1, max: 12 }) }), { minLength: 1, maxLength: 120 }),
      (maxStarts, windowMs, claims) => {
        const rate = { maxStarts, windowMs };
        const buckets: StartBucket[] = [];
        const starts: number[] = [];
        let now = 1_700_000_000_000;
        for (const claim of claims) {
          now += claim.gap;
          const allowed = rateAllowance(rate, buckets, now);
          const took = Math.min(claim.want, allowed);
          record(buckets, windowMs, now, took);
          for (let i = 0; i < took; i++) starts.push(now);
          const wait = rateWaitMs(rate, buckets, now);
          if (wait === null) return false;
          // At the time rateWaitMs names, a start is allowed, and not a millisecond before.
          if (rateAllowance(rate, buckets, now + wait) < 1) return false;
          if (wait > 0 && rateAllowance(rate, buckets, now + wait - 1) > 0) return false;
        }
        // The bound, checked on the start times themselves: any closed interval of length windowMs.
        for (let i = 0; i < starts.length; i++) {
          let inWindow = 0;
          for (let j = i; j < starts.length && starts[j]! <= starts[i]! + windowMs; j++) inWindow++;
          if (inWindow > maxStarts) return false;
        }
        return true;
      },
    ),
    { seed: 8_038, numRuns: 300 },
  );
  t.pass("300 random claim sequences");
});

t.test("claimAllowance: the smallest of what is wanted, the free running slots and the rate allowance; never negative", async (t) => {
  t.equal(claimAllowance({ want: 10, maxRunning: null, running: 0, rateAllowance: null }), 10);
  t.equal(claimAllowance({ want: 10, maxRunning: 4, running: 1, rateAllowance: null }), 3);
  t.equal(claimAllowance({ want: 10, maxRunning: 4, running: 1, rateAllowance: 2 }), 2);
  t.equal(claimAllowance({ want: 10, maxRunning: 2, running: 5, rateAllowance: null }), 0, "more running than a lowered limit: none");
  t.equal(claimAllowance({ want: 10, maxRunning: 0, running: 0, rateAllowance: null }), 0, "0 is a limit");
});

function group(key: string | null, running: number, ids: string[], priority = 0): ClaimGroup {
  return { key, running, candidates: ids.map((id) => ({ id, priority })) };
}

t.test("planLimitedClaim by hand: one per key per turn, in rotation order; caps per key; no cap without a key", async (t) => {
  const groups = [group("b", 0, ["b1", "b2", "b3"]), group(null, 0, ["n1", "n2", "n3"]), group("a", 1, ["a1", "a2", "a3"])];
  const picks = planLimitedClaim({ groups, allowance: 8, maxRunningPerKey: 2 });
  t.same(picks.map((p) => p.id), ["b1", "n1", "a1", "b2", "n2", "n3"], "a has 1 running of 2: one more; b two; the group without a key is not capped");
  t.same(planLimitedClaim({ groups, allowance: 2, maxRunningPerKey: 2 }).map((p) => p.id), ["b1", "n1"], "the allowance cuts the turn in rotation order");
  const prioritised = [group("a", 0, ["a1", "a2"]), group("b", 0, ["b1"], 5)];
  t.same(planLimitedClaim({ groups: prioritised, allowance: 1, maxRunningPerKey: null }).map((p) => p.id), ["b1"], "within a turn, higher priority first");
  t.same(planLimitedClaim({ groups: prioritised, allowance: 3, maxRunningPerKey: null }).map((p) => p.id), ["b1", "a1", "a2"], "but no key gets a second before every key had a first");
  t.same(planLimitedClaim({ groups, allowance: 8, maxRunningPerKey: 0 }).map((p) => p.id), ["n1", "n2", "n3"], "max_running_per_key 0: only tasks without a key");
});

t.test("property: planLimitedClaim stays within the allowance and every key's cap, takes each group's best first, and is round-robin", async (t) => {
  const groupArb = fc.record({
    running: fc.integer({ min: 0, max: 4 }),
    size: fc.integer({ min: 0, max: 8 }),
    priority: fc.integer({ min: -2, max: 2 }),
    keyless: fc.boolean(),
  });
  fc.assert(
    fc.property(fc.array(groupArb, { maxLength: 12 }), fc.integer({ min: 0, max: 40 }), fc.option(fc.integer({ min: 0, max: 4 }), { nil: null }), (specs, allowance, cap) => {
      let keylessSeen = false;
      const groups = specs.map((spec, i) => {
        const keyless = spec.keyless && !keylessSeen;
        keylessSeen ||= keyless;
        return group(keyless ? null : `k${i}`, keyless ? 0 : spec.running, Array.from({ length: spec.size }, (_, j) => `${i}-${j}`), spec.priority);
      });
      const picks = planLimitedClaim({ groups, allowance, maxRunningPerKey: cap });
      if (picks.length > allowance) return false;
      if (new Set(picks.map((p) => p.id)).size !== picks.length) return false;
      const limitOf = (g: ClaimGroup) => Math.min(g.candidates.length, g.key === null || cap === null ? Infinity : Math.max(0, cap - g.running));
      const taken = groups.map((g) => picks.filter((p) => p.id.startsWith(`${groups.indexOf(g)}-`)).map((p) => p.id));
      for (const [i, g] of groups.entries()) {
        if (taken[i]!.length > limitOf(g)) return false; // the key's cap
        if (taken[i]!.some((id, j) => id !== g.candidates[j]!.id)) return false; // its best tasks, in order
      }
      // Round-robin: no group has two more than another that could still take one.
      for (const [i] of groups.entries()) {
        for (const [j, h] of groups.entries()) {
          if (taken[i]!.length > taken[j]!.length + 1 && taken[j]!.length < limitOf(h)) return false;
        }
      }
      // Nothing left that could have been taken while the allowance was not used up.
      const capacity = groups.reduce((sum, g) => sum + limitOf(g), 0);
      return picks.length === Math.min(allowance, capacity);
    }),
    { seed: 8_039, numRuns: 500 },
  );
  t.pass("500 random claims");
});
