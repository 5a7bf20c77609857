/**
 * A pool that refuses an attempt (all threads busy, no queue room: e.g. while a stopped thread is
 * being replaced) hands the task back uncounted; it is never recorded as the handler's failure.
 * Unit level: a stand-in pool refuses every attempt (a real one cannot be made to refuse on cue).
 */
import t from "tap";
import type { Assignment } from "../../src/core/task.js";
import type { Dispatcher, SessionSink } from "../../src/dispatch/dispatcher.js";
import { InlineRunner } from "../../src/inline/inline-runner.js";
import { PoolFullError, type InlinePool } from "../../src/inline/inline-pool.js";
import { testLogger } from "../helpers/logger.js";

t.test("an attempt the pool has no room for is released, not failed", async (t) => {
  const reports: string[] = [];
  let sink: SessionSink | undefined;
  const dispatcher = {
    open: (params: { sink: SessionSink }) => {
      sink = params.sink;
      return { inFlight: new Map() };
    },
    drain: () => {},
    close: async () => {},
    releaseTask: async (r: { reason: string }) => void reports.push(`released: ${r.reason}`),
    fail: async (r: { error: string }) => void reports.push(`failed: ${r.error}`),
    complete: async () => void reports.push("completed"),
  } as unknown as Dispatcher;
  const pool = { capacity: 1, close: async () => {}, run: () => Promise.reject(new PoolFullError()) } as unknown as InlinePool;
  const db = { query: async () => [{ namespace: "default", name: "t.work", module: "work.ts", leaseMs: 30_000 }] };
  const runner = new InlineRunner({ db: db as never, dispatcher, pool, logger: testLogger(), workerId: "inline-test" }, 60_000);
  t.teardown(() => runner.stop(0));
  await runner.refresh();
  const a = { taskId: "1", namespace: "default", jobType: "t.work", attempt: 1, leaseToken: "x", timeoutMs: null, input: { typeUrl: "", value: new Uint8Array() }, parents: [] } as unknown as Assignment;
  sink!.assign([a]);
  while (reports.length === 0) await new Promise((r) => setTimeout(r, 5));
  t.same(reports, ["released: the inline pool was full"]);
});
