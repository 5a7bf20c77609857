/** The backoff formula exists twice, in TypeScript (the spec) and in SQL (what runs): they agree. */
import t from "tap";
import { backoffDelayMs } from "../../src/core/backoff.js";
import { createTestDatabase } from "../helpers/database.js";

const { database } = await createTestDatabase(t);

t.test("taskwire_backoff_ms equals backoffDelayMs", async (t) => {
  const cases: [base: number, cap: number, attempt: number, jitter: number][] = [];
  for (const [base, cap] of [[0, 0], [0, 1000], [1000, 600_000], [250, 250], [1, 86_400_000], [7, 100]] as const) {
    for (const attempt of [0, 1, 2, 3, 10, 40, 60, 1000]) for (const jitter of [0, 0.25, 0.5, 0.999]) cases.push([base, cap, attempt, jitter]);
  }
  const rows = await database.db.query<{ ms: number }>(
    "SELECT taskwire_backoff_ms(b, c, a, j) AS ms FROM unnest($1::int[], $2::int[], $3::int[], $4::float8[]) AS x(b, c, a, j)",
    [cases.map((c) => c[0]), cases.map((c) => c[1]), cases.map((c) => c[2]), cases.map((c) => c[3])],
  );
  const mismatches = cases
    .map(([base, cap, attempt, jitter], i) => ({ base, cap, attempt, jitter, ts: backoffDelayMs({ baseMs: base, capMs: cap }, attempt, () => jitter), sql: rows[i]!.ms }))
    .filter((x) => x.ts !== x.sql);
  t.same(mismatches, [], `${cases.length} cases agree`);
});
