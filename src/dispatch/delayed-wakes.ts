/**
 * Timers for delayed tasks: a NOTIFY announces tasks of (namespace, job type) that become ready at
 * a later time, and the dispatcher must look for them then, not at the next safety poll. Every
 * announced time is kept (sorted, bounded per key) and one timer per key waits for the earliest,
 * so several delayed tasks of one job type each start on time, whatever order they were
 * submitted in.
 */

/** Distinct wake times kept per key; beyond this the latest are left to the safety poll. */
const MAX_TIMES_PER_KEY = 1_000;
/** Times this close together share one wake (ms). */
const MERGE_MS = 5;
/** Longest single timer; longer waits re-arm (setTimeout cannot wait beyond ~24.8 days). */
const MAX_TIMER_MS = 60 * 60 * 1_000;

interface Entry {
  /** Wake times (epoch ms), ascending. */
  times: number[];
  timer: NodeJS.Timeout;
}

/** Calls `wake(key)` at each announced time (the key is opaque here). */
export class DelayedWakes {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly wake: (key: string) => void) {}

  /** Wakes `key` at `atMs` (epoch ms). */
  add(key: string, atMs: number): void {
    const entry = this.entries.get(key);
    if (entry === undefined) {
      this.arm(key, [atMs]);
      return;
    }
    const { times } = entry;
    let i = 0;
    while (i < times.length && times[i]! < atMs) i++;
    if ((i < times.length && times[i]! - atMs <= MERGE_MS) || (i > 0 && atMs - times[i - 1]! <= MERGE_MS)) return;
    times.splice(i, 0, atMs);
    if (times.length > MAX_TIMES_PER_KEY) times.pop();
    if (i === 0) {
      clearTimeout(entry.timer);
      this.arm(key, times);
    }
  }

  /** Cancels every timer. */
  clear(): void {
    for (const entry of this.entries.values()) clearTimeout(entry.timer);
    this.entries.clear();
  }

  private arm(key: string, times: number[]): void {
    const delay = Math.min(Math.max(times[0]! - Date.now(), 0), MAX_TIMER_MS);
    // +1: a timer may fire a moment early, and the claim compares run_at with the database's now().
    const timer = setTimeout(() => this.fire(key), delay + 1);
    timer.unref();
    this.entries.set(key, { times, timer });
  }

  private fire(key: string): void {
    const entry = this.entries.get(key);
    if (entry === undefined) return;
    const now = Date.now();
    const due = entry.times.filter((t) => t <= now).length;
    entry.times.splice(0, due);
    if (entry.times.length > 0) this.arm(key, entry.times);
    else this.entries.delete(key);
    if (due > 0) this.wake(key);
  }
}
