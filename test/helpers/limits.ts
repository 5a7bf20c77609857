/** Observers for limit tests: RUNNING counts sampled from the database, and concurrency rebuilt from attempt history. */
import pg from "pg";
import type { Test } from "tap";

/** The most RUNNING tasks seen at once, per concurrency key ("" for none) and in all. */
export interface RunningPeaks {
  perKey: Map<string, number>;
  total: number;
  samples: number;
}

/**
 * Samples the job type's RUNNING tasks per key on its own connection, as often as the database
 * answers, until stop() (which returns the peaks).
 */
export async function sampleRunning(t: Test, databaseUrl: string, jobType: string): Promise<{ stop(): Promise<RunningPeaks> }> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  t.teardown(() => client.end().catch(() => undefined));
  const peaks: RunningPeaks = { perKey: new Map(), total: 0, samples: 0 };
  let running = true;
  const loop = (async () => {
    while (running) {
      const { rows } = await client.query<{ k: string; n: number }>(
        "SELECT coalesce(concurrency_key, '') AS k, count(*)::int AS n FROM task WHERE namespace = 'default' AND job_type = $1 AND state = 'running' GROUP BY 1",
        [jobType],
      );
      let total = 0;
      for (const { k, n } of rows) {
        total += n;
        peaks.perKey.set(k, Math.max(peaks.perKey.get(k) ?? 0, n));
      }
      peaks.total = Math.max(peaks.total, total);
      peaks.samples += 1;
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return peaks;
    },
  };
}

/**
 * The most attempts of the job type that ever ran at once, per key and in all, from task_attempt:
 * an attempt runs from started_at until ended_at (still running: until now). A slot is reused only
 * by a claim made after the freeing report committed, whose start is later than that report's
 * ended_at, so touching intervals never overlap.
 */
export async function historyPeaks(db: { query<R>(sql: string, values?: unknown[]): Promise<R[]> }, jobType: string): Promise<{ perKey: Map<string, number>; total: number; attempts: number }> {
  const rows = await db.query<{ k: string; s: string; e: string | null }>(
    `SELECT coalesce(t.concurrency_key, '') AS k, (extract(epoch FROM a.started_at) * 1000000)::bigint::text AS s,
       (extract(epoch FROM a.ended_at) * 1000000)::bigint::text AS e
     FROM task t JOIN task_attempt a ON a.task_id = t.id WHERE t.namespace = 'default' AND t.job_type = $1`,
    [jobType],
  );
  const peak = (list: typeof rows) => {
    const points = list.flatMap((r) => [
      { at: BigInt(r.s), d: 1 },
      { at: r.e === null ? 2n ** 62n : BigInt(r.e), d: -1 },
    ]);
    // Ends before starts at the same instant: an interval is [start, end).
    points.sort((x, y) => (x.at < y.at ? -1 : x.at > y.at ? 1 : x.d - y.d));
    let now = 0;
    let max = 0;
    for (const p of points) {
      now += p.d;
      max = Math.max(max, now);
    }
    return max;
  };
  const perKey = new Map<string, number>();
  for (const k of new Set(rows.map((r) => r.k))) perKey.set(k, peak(rows.filter((r) => r.k === k)));
  return { perKey, total: peak(rows), attempts: rows.length };
}

/** Polls `check` every 20 ms until it returns true; throws after `timeoutMs`. */
export async function until(check: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
