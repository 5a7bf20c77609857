/** InlineRunner.stop leaves nothing behind that keeps the process alive (no database, no threads needed). */
import t from "tap";
import type { Dispatcher } from "../../src/dispatch/dispatcher.js";
import { InlineRunner } from "../../src/inline/inline-runner.js";
import type { InlinePool } from "../../src/inline/inline-pool.js";
import { testLogger } from "../helpers/logger.js";

const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;

t.test("stop with nothing running returns at once and leaves no grace timer running", async (t) => {
  const dispatcher = { drain: () => {}, close: async () => {} } as unknown as Dispatcher;
  const pool = { close: async () => {}, capacity: 1 } as unknown as InlinePool;
  const runner = new InlineRunner({ db: { query: async () => [] }, dispatcher, pool, logger: testLogger(), workerId: "inline-test" }, 60_000);
  const before = timers();
  const started = Date.now();
  await runner.stop(600_000);
  t.ok(Date.now() - started < 5_000, "no attempt to wait for");
  t.equal(timers(), before, "the grace period's timer is gone (it kept an embedding process alive for the whole grace period)");
});
