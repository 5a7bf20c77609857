import t from "tap";
import { MaintenanceLoop } from "../../src/engine/maintenance-loop.js";
import { testLogger } from "../helpers/logger.js";

t.test("a pass runs batches until one says there is no more; concurrent calls share the pass", async (t) => {
  let calls = 0;
  const loop = new MaintenanceLoop({ intervalMs: 60_000, logger: testLogger(), what: "test", batch: async () => ++calls < 3 });
  t.teardown(() => loop.stop());
  await Promise.all([loop.run(), loop.run()]);
  t.equal(calls, 3, "three batches, one pass");
  await loop.run();
  t.equal(calls, 4, "a later call runs a new pass");
});

t.test("a failed batch ends its pass; the next pass runs again", async (t) => {
  let calls = 0;
  const loop = new MaintenanceLoop({
    intervalMs: 60_000,
    logger: testLogger(),
    what: "test",
    batch: async () => {
      calls += 1;
      if (calls === 1) throw new Error("database down");
      return false;
    },
  });
  t.teardown(() => loop.stop());
  await loop.run();
  await loop.run();
  t.equal(calls, 2);
});

t.test("stop waits for the pass in progress, which ends after its current batch", async (t) => {
  let release = () => {};
  let calls = 0;
  const loop = new MaintenanceLoop({
    intervalMs: 60_000,
    logger: testLogger(),
    what: "test",
    batch: () => {
      calls += 1;
      return new Promise<boolean>((resolve) => (release = () => resolve(true)));
    },
  });
  const pass = loop.run();
  const stopped = loop.stop();
  release();
  await stopped;
  await pass;
  t.equal(calls, 1, "no batch after stop");
});
