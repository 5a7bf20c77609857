/** Small numeric helpers and the human-readable table. */

/** A wall-clock-comparable time in ms: CLOCK_MONOTONIC, which every process on the machine shares. */
export function now(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** The p-th percentile (0..100) of `values` by the nearest-rank method; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1]!;
}

/** The median of `values` (mean of the middle two for an even count); NaN when empty. */
export function median(values: readonly number[]): number {
  const finite = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (finite.length === 0) return Number.NaN;
  const mid = Math.floor(finite.length / 2);
  return finite.length % 2 === 1 ? finite[mid]! : (finite[mid - 1]! + finite[mid]!) / 2;
}

/** Rounds to `digits` decimals (JSON output stays readable). */
export function round(value: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/**
 * For each numeric field that every run has (one level of nesting), the median across runs.
 * Non-numeric fields are taken from the first run.
 */
export function medianOf(runs: readonly Record<string, unknown>[]): Record<string, unknown> {
  const first = runs[0] ?? {};
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(first)) {
    if (typeof value === "number") {
      out[key] = round(median(runs.map((r) => r[key] as number)), 3);
    } else if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      out[key] = medianOf(runs.map((r) => (r[key] ?? {}) as Record<string, unknown>));
    } else {
      out[key] = value;
    }
  }
  return out;
}

/** Renders rows as an aligned text table. */
export function table(headers: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const cells = [headers, ...rows].map((row) => row.map((c) => (typeof c === "number" ? formatNumber(c) : c)));
  const widths = headers.map((_, i) => Math.max(...cells.map((row) => (row[i] ?? "").length)));
  const line = (row: readonly string[]) => row.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  return [line(cells[0]!), widths.map((w) => "-".repeat(w)).join("  "), ...cells.slice(1).map(line)].join("\n");
}

/** Thousands separators for big numbers, two decimals for small ones. */
export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return "-";
  if (Math.abs(value) >= 100) return Math.round(value).toLocaleString("en-US");
  return value.toFixed(2);
}
