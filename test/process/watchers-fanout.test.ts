/**
 * 500 concurrent watchers, one of which never reads: HTTP/2 flow control stops the stalled one, the
 * shared ring of recent events stays within its bound (so the stalled one falls out of it), nobody
 * holds more than one read's worth of events, and the other 499 each receive every event, in order.
 * The scenario runs in a child process (test/fixtures/watchers-fanout.ts), away from tap's
 * per-promise instrumentation, and reports what it saw.
 */
import { execFile } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import t from "tap";
import { createTestDatabaseUrl } from "../helpers/database.js";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const RING_BYTES = 256 * 1024;
/** Events one watcher takes per read (READ_BATCH in src/events/status-stream.ts). */
const READ_BATCH = 128;

t.test("500 watchers, one stalled: bounded memory, and the others get every event in order", async (t) => {
  const databaseUrl = await createTestDatabaseUrl(t);
  const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", "test/fixtures/watchers-fanout.ts", databaseUrl, String(RING_BYTES)], {
    cwd: repo,
    timeout: 240_000,
    maxBuffer: 1024 * 1024,
  });
  const seen = JSON.parse(stdout.trim().split("\n").at(-1)!) as Record<string, unknown>;
  t.comment(`the 499 live watchers had all 600 events ${String(seen.deliveredMs)} ms after the first small task was submitted`);
  t.same([seen.bigTasks, seen.bigClaimed], [300, 300]);
  t.equal(seen.expectedEvents, 600, "200 tasks x (pending, running, succeeded)");
  t.equal(seen.wrongWatchers, 0, "each of the 499 live watchers got exactly the expected sequence numbers, in order");
  t.equal(seen.allSucceeded, true);
  t.ok(BigInt(seen.stalledPosition as string) < BigInt(seen.lastSeq as string), `the stalled watcher stayed behind (at ${String(seen.stalledPosition)}, events reach ${String(seen.lastSeq)})`);
  t.ok((seen.longestQueue as number) <= READ_BATCH, `no watcher held more than ${READ_BATCH} events of its own (most seen: ${String(seen.longestQueue)})`);
  t.ok((seen.largestRing as number) <= RING_BYTES, `the shared ring stayed within ${RING_BYTES} bytes (largest seen: ${String(seen.largestRing)})`);
  t.ok((seen.largestRing as number) > RING_BYTES / 2, "the ring was filled (so the stalled watcher fell out of it)");
  t.same([seen.stalledUnsubscribed, seen.allUnsubscribed], [true, true], "closed streams were unsubscribed");
});
