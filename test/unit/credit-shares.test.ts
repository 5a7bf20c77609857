/** The inline pool's capacity shared among namespaces: shares add up to the capacity, never more. */
import t from "tap";
import { creditShares } from "../../src/inline/credit-shares.js";

const sum = (shares: Map<string, number>) => [...shares.values()].reduce((a, b) => a + b, 0);

t.test("one namespace has the whole pool", async (t) => {
  t.same([...creditShares(8, ["default"])], [["default", 8]]);
});

t.test("an even split, the remainder to the first in name order, whatever the order given", async (t) => {
  t.same(Object.fromEntries(creditShares(8, ["c", "a", "b"])), { a: 3, b: 3, c: 2 });
  for (let capacity = 1; capacity <= 20; capacity++) {
    for (let n = 1; n <= capacity; n++) {
      const shares = creditShares(capacity, Array.from({ length: n }, (_, i) => `ns${i}`));
      t.equal(sum(shares), capacity, `capacity ${capacity}, ${n} namespaces: the shares add up to it`);
      t.ok(Math.max(...shares.values()) - Math.min(...shares.values()) <= 1, "and differ by one at most");
    }
  }
});

t.test("more namespaces than credits: one each (the runner gives them turns)", async (t) => {
  t.same(Object.fromEntries(creditShares(2, ["a", "b", "c"])), { a: 1, b: 1, c: 1 });
  t.same(creditShares(4, []).size, 0);
});
