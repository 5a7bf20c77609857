import t from "tap";
import { FifoQueue } from "../../src/core/fifo-queue.js";

t.test("items come out in the order they went in, across compactions", async (t) => {
  const q = new FifoQueue<number>();
  const out: number[] = [];
  let next = 0;
  // Interleave pushes and shifts so the queue compacts several times while holding items.
  for (let round = 0; round < 50; round++) {
    for (let i = 0; i < 100; i++) q.push(next++);
    for (let i = 0; i < 60; i++) out.push(q.shift()!);
  }
  t.equal(q.length, next - out.length);
  while (q.length > 0) out.push(q.shift()!);
  t.same(out, Array.from({ length: next }, (_, i) => i));
  t.equal(q.shift(), undefined, "empty: undefined");
});

t.test("clear empties the queue", async (t) => {
  const q = new FifoQueue<string>();
  q.push("a");
  q.push("b");
  q.clear();
  t.equal(q.length, 0);
  t.equal(q.shift(), undefined);
  q.push("c");
  t.equal(q.shift(), "c");
});
