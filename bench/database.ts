/**
 * The harness's own look at the database, beside the server: durability settings, the check that
 * every task ran exactly once and none is left, the PostgreSQL processes (for their CPU), and
 * per-statement times from pg_stat_statements when the server has it loaded.
 */
import pg from "pg";
import { existsSync } from "node:fs";
import { parentOf, processTree } from "./proc-stats.js";

/** Settings that decide durability and speed, as the server reports them. */
export interface DbSettings {
  version: string;
  fsync: string;
  synchronousCommit: string;
  fullPageWrites: string;
  walSyncMethod: string;
  sharedBuffers: string;
}

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** The durability-relevant settings. */
export function readSettings(url: string): Promise<DbSettings> {
  return withClient(url, async (c) => {
    const show = async (name: string) => ((await c.query(`SHOW ${name}`)).rows[0] as Record<string, string>)[name]!;
    return {
      version: await show("server_version"),
      fsync: await show("fsync"),
      synchronousCommit: await show("synchronous_commit"),
      fullPageWrites: await show("full_page_writes"),
      walSyncMethod: await show("wal_sync_method"),
      sharedBuffers: await show("shared_buffers"),
    };
  });
}

/** True for PostgreSQL's durable defaults (fsync on, synchronous_commit on). */
export function isDurable(s: DbSettings): boolean {
  return s.fsync === "on" && s.synchronousCommit === "on";
}

/**
 * The pids of the PostgreSQL cluster behind `url` (postmaster and all its children), found through
 * a backend's parent; empty when the database is not on this machine.
 */
export function postgresPids(url: string): Promise<() => number[]> {
  return withClient(url, async (c) => {
    const backend = ((await c.query("SELECT pg_backend_pid() AS pid")).rows[0] as { pid: number }).pid;
    const postmaster = existsSync(`/proc/${backend}`) ? parentOf(backend) : undefined;
    return () => (postmaster === undefined ? [] : processTree(postmaster));
  });
}

/** Best effort: flushes dirty buffers so a checkpoint does not land in the middle of a measured run. */
export async function checkpoint(url: string): Promise<void> {
  await withClient(url, (c) => c.query("CHECKPOINT")).catch(() => undefined);
}

/** What the database holds for one job type: tasks by (state, attempt), and attempt rows. */
export interface TaskCheck {
  ok: boolean;
  /** "state/attempt" -> count. */
  byStateAttempt: Record<string, number>;
  attemptRows: number;
  problem?: string;
}

/** Checks that exactly `expected` tasks of `jobType` exist, all SUCCEEDED on attempt 1 with one attempt row each. */
export function verifyTasks(url: string, jobType: string, expected: number): Promise<TaskCheck> {
  return withClient(url, async (c) => {
    const rows = (await c.query('SELECT "state", "attempt", count(*)::int AS n FROM "task" WHERE "job_type" = $1 GROUP BY 1, 2', [jobType])).rows as {
      state: string;
      attempt: number;
      n: number;
    }[];
    const byStateAttempt = Object.fromEntries(rows.map((r) => [`${r.state}/${r.attempt}`, r.n]));
    const attemptRows = ((await c.query('SELECT count(*)::int AS n FROM "task_attempt" a JOIN "task" t ON t."id" = a."task_id" WHERE t."job_type" = $1', [jobType])).rows[0] as { n: number }).n;
    const succeeded = byStateAttempt["succeeded/1"] ?? 0;
    const total = rows.reduce((sum, r) => sum + r.n, 0);
    let problem: string | undefined;
    if (total !== expected) problem = `${total} tasks in the database, expected ${expected}`;
    else if (succeeded !== expected) problem = `not all tasks SUCCEEDED on attempt 1: ${JSON.stringify(byStateAttempt)}`;
    else if (attemptRows !== expected) problem = `${attemptRows} attempt rows, expected ${expected}`;
    return { ok: problem === undefined, byStateAttempt, attemptRows, ...(problem === undefined ? {} : { problem }) };
  });
}

/** Per-statement totals from pg_stat_statements. */
export interface StatementStat {
  query: string;
  calls: number;
  /** Execution time, ms (triggers' statements are also listed on their own: pg_stat_statements.track = all). */
  totalMs: number;
  meanMs: number;
  /** Planning time, ms (0 unless pg_stat_statements.track_planning is on). */
  planMs: number;
  rows: number;
}

/** Resets pg_stat_statements; false when it is not available (not in shared_preload_libraries). */
export async function resetStatementStats(url: string): Promise<boolean> {
  return withClient(url, async (c) => {
    try {
      await c.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
      await c.query("SELECT pg_stat_statements_reset()");
      return true;
    } catch {
      return false;
    }
  });
}

/** The statements that took the most execution time since the reset. */
export function topStatements(url: string, limit = 12): Promise<StatementStat[]> {
  return withClient(url, async (c) => {
    const r = await c.query(
      `SELECT regexp_replace(query, '\\s+', ' ', 'g') AS query, calls::int, total_exec_time AS total, mean_exec_time AS mean,
         total_plan_time AS plan, rows::int
       FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
       ORDER BY total_exec_time + total_plan_time DESC LIMIT $1`,
      [limit],
    );
    return (r.rows as { query: string; calls: number; total: number; mean: number; plan: number; rows: number }[]).map((s) => ({
      query: s.query.length > 160 ? `${s.query.slice(0, 157)}...` : s.query,
      calls: s.calls,
      totalMs: Math.round(s.total),
      meanMs: Math.round(s.mean * 1000) / 1000,
      planMs: Math.round(s.plan),
      rows: s.rows,
    }));
  });
}
