/**
 * Logs when this process's event loop did not run for more than 8 ms, on the clock every process on
 * the machine shares (CLOCK_MONOTONIC, ms, as bench/stats.ts `now`). Loaded into every Node process
 * of a bench run, it shows whether a stall was one process's own (its GC, a long function) or all of
 * them at once (the cores were busy elsewhere):
 *
 *   mkdir -p /tmp/stalls && NODE_OPTIONS="--import $PWD/bench/stall-watch.mjs" STALL_DIR=/tmp/stalls \
 *     npm run bench -- w2 --runs 1 --latencies-out /tmp/stalls/w2.jsonl
 *
 * Plain JavaScript, so that Node loads it before tsx is registered.
 */
import { appendFileSync } from "node:fs";

const dir = process.env.STALL_DIR ?? "/tmp";
const file = `${dir}/stalls.${process.pid}.log`;
const who = process.argv.slice(1).join(" ").slice(-80);
const clock = () => Number(process.hrtime.bigint()) / 1e6;
let last = clock();
setInterval(() => {
  const at = clock();
  if (at - last > 8) appendFileSync(file, `${at.toFixed(1)} ${(at - last).toFixed(1)} ${who}\n`);
  last = at;
}, 2).unref();
