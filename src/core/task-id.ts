/** Task ids: the decimal form of a positive PostgreSQL bigint. */

const MAX_BIGINT = 9_223_372_036_854_775_807n;

/** True for a decimal number that can be a task id. */
export function isTaskId(value: string): boolean {
  return /^[1-9][0-9]{0,18}$/.test(value) && BigInt(value) <= MAX_BIGINT;
}
