/** Durations as people type them on the command line: "90d", "12h", "30m", "45s", "1500ms". */

const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Milliseconds of a duration like "90d"; throws a message saying the format when it is not one. */
export function parseDurationText(text: string): number {
  const match = /^(\d{1,9})(ms|s|m|h|d)$/.exec(text.trim());
  if (match === null) throw new Error(`${JSON.stringify(text)} is not a duration; write a whole number and a unit: ms, s, m, h or d (e.g. 90d)`);
  return Number(match[1]) * UNITS[match[2]!]!;
}
