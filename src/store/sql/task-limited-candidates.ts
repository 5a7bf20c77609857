/** The limited claim, step 3: the tasks it may choose from, grouped by concurrency key in round-robin order. */
import type { ClaimGroup } from "../../core/claim-limits.js";
import type { Db } from "../db.js";

// Round-robin over the groups of a job type's pending limited tasks: every concurrency key, and the
// tasks without a key (the key '' in task_limited_pending_idx). The rotation starts after the
// cursor (the group served last): first the keys after it in index order (phase 1), then, wrapping
// around, the group without a key and the keys up to the cursor itself (phase 2).
//
// The keys are found by a loose index scan over task_limited_pending_idx (one index descent per
// key, however many tasks each has), which stops once $4 keys with a free slot and a ready task
// were found, or after $6 keys. Each key's running tasks are counted through
// task_limited_running_idx, only up to max_running_per_key ($5; null: keys are not limited and
// count 0). Then each key gives at most min($4, its free slots) of its ready tasks in claim order,
// and the group without a key at most $4: a key with a long backlog costs a claim no more than one
// with a few tasks. Rows: one per (key, task), a key with none once with a null id; the group
// without a key has key NULL and phase 0. No locks: the caller holds the job type's limited-claim
// lock, and the claim re-checks each row's state.
const SQL = `
WITH RECURSIVE probe(key, phase, pos, running, ready, found) AS (
  SELECT coalesce($3::text, ''), 1, 0, 0, false, 0
  UNION ALL
  SELECT nx.key, nx.phase, p.pos + 1, nx.running, nx.ready,
    p.found + (nx.ready AND ($5::int IS NULL OR nx.running < $5::int))::int
  FROM probe p
  CROSS JOIN LATERAL (
    SELECT n.key, n.phase,
      CASE WHEN $5::int IS NULL THEN 0 ELSE (
        SELECT count(*)::int FROM (
          SELECT 1 FROM task r
          WHERE r.namespace = $1 AND r.job_type = $2 AND r.concurrency_key = n.key AND r.state = 'running' AND r.limited
          LIMIT $5::int
        ) c
      ) END AS running,
      EXISTS (
        SELECT 1 FROM task w
        WHERE w.namespace = $1 AND w.job_type = $2 AND coalesce(w.concurrency_key, '') = n.key AND w.state = 'pending' AND w.limited
          AND w.run_at <= now()
      ) AS ready
    FROM (
      SELECT x.key, x.phase FROM (
        SELECT (
          SELECT t.concurrency_key FROM task t
          WHERE t.namespace = $1 AND t.job_type = $2 AND coalesce(t.concurrency_key, '') > p.key AND t.state = 'pending' AND t.limited
          ORDER BY coalesce(t.concurrency_key, '') LIMIT 1
        ) AS key, p.phase
        UNION ALL
        SELECT (
          SELECT t.concurrency_key FROM task t
          WHERE t.namespace = $1 AND t.job_type = $2 AND coalesce(t.concurrency_key, '') > '' AND t.state = 'pending' AND t.limited
          ORDER BY coalesce(t.concurrency_key, '') LIMIT 1
        ), 2
        WHERE p.phase = 1 AND $3::text <> ''
      ) x
      WHERE x.key IS NOT NULL AND (x.phase = 1 OR x.key <= $3::text)
      LIMIT 1
    ) n
    OFFSET 0
  ) nx
  WHERE p.found < $4::int AND p.pos < $6::int
)
SELECT k.key, k.phase, k.pos, k.running, k.found, c.id::text AS id, c.priority, c.rank
FROM probe k
LEFT JOIN LATERAL (
  SELECT t.id, t.priority, row_number() OVER (ORDER BY t.priority DESC, t.run_at, t.id)::int AS rank
  FROM task t
  WHERE t.namespace = $1 AND t.job_type = $2 AND coalesce(t.concurrency_key, '') = k.key AND t.state = 'pending' AND t.limited AND t.run_at <= now()
  ORDER BY t.priority DESC, t.run_at, t.id
  LIMIT CASE WHEN $5::int IS NULL THEN $4::int ELSE greatest(least($4::int, $5::int - k.running), 0) END
) c ON true
WHERE k.pos > 0
UNION ALL
SELECT NULL, 0, 0, 0, 0, c.id::text, c.priority, c.rank
FROM (
  SELECT t.id, t.priority, row_number() OVER (ORDER BY t.priority DESC, t.run_at, t.id)::int AS rank
  FROM task t
  WHERE t.namespace = $1 AND t.job_type = $2 AND coalesce(t.concurrency_key, '') = '' AND t.state = 'pending' AND t.limited AND t.run_at <= now()
  ORDER BY t.priority DESC, t.run_at, t.id
  LIMIT $4::int
) c`;

interface Row {
  key: string | null;
  phase: number;
  pos: number;
  running: number;
  found: number;
  id: string | null;
  priority: number | null;
  rank: number | null;
}

/** The groups to choose from, and whether the walk over keys stopped before it went round. */
export interface LimitedCandidates {
  /** In rotation order: the group after the cursor first. */
  groups: ClaimGroup[];
  /** The walk stopped at maxProbes keys with too few found: keys after lastProbed were not looked at. */
  truncated: boolean;
  /** The last key the walk looked at, or null when it looked at none. */
  lastProbed: string | null;
}

/** Reads the candidates of a limited claim after `cursor` (see job-type-limit-state). */
export async function taskLimitedCandidates(
  db: Db,
  params: { namespace: string; jobType: string; cursor: string | null; want: number; maxRunningPerKey: number | null; maxProbes: number },
): Promise<LimitedCandidates> {
  const rows = await db.query<Row>(SQL, [params.namespace, params.jobType, params.cursor, params.want, params.maxRunningPerKey, params.maxProbes]);
  const keyed = new Map<number, { phase: number; group: ClaimGroup; ranked: { rank: number; id: string; priority: number }[]; found: number }>();
  const keyless: { rank: number; id: string; priority: number }[] = [];
  for (const row of rows) {
    const candidate = row.id === null ? undefined : { rank: row.rank!, id: row.id, priority: row.priority! };
    if (row.phase === 0) {
      if (candidate !== undefined) keyless.push(candidate);
      continue;
    }
    let entry = keyed.get(row.pos);
    if (entry === undefined) {
      entry = { phase: row.phase, group: { key: row.key, running: row.running, candidates: [] }, ranked: [], found: row.found };
      keyed.set(row.pos, entry);
    }
    if (candidate !== undefined) entry.ranked.push(candidate);
  }
  const byRank = (list: { rank: number; id: string; priority: number }[]) => list.sort((a, b) => a.rank - b.rank).map(({ id, priority }) => ({ id, priority }));
  const probes = [...keyed.entries()].sort(([a], [b]) => a - b).map(([, entry]) => ({ ...entry, group: { ...entry.group, candidates: byRank(entry.ranked) } }));
  const noKey: ClaimGroup = { key: null, running: 0, candidates: byRank(keyless) };
  const phase1 = probes.filter((p) => p.phase === 1).map((p) => p.group);
  const phase2 = probes.filter((p) => p.phase === 2).map((p) => p.group);
  const groups = params.cursor === null ? [noKey, ...phase1] : [...phase1, noKey, ...phase2];
  const last = probes.at(-1);
  return {
    groups,
    truncated: last !== undefined && probes.length >= params.maxProbes && last.found < params.want,
    lastProbed: last?.group.key ?? null,
  };
}
