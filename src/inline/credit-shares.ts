/**
 * How the inline pool's capacity (threads + queue) is shared among the namespaces that have inline
 * job types: each namespace's session claims at most its share, so together they never claim more
 * than the pool takes at once.
 */

/**
 * Each namespace's credits: the capacity split evenly (the remainder to the first in name order),
 * so the shares add up to the capacity. With fewer credits than namespaces each gets 1, and only
 * `capacity` of them can hold a session at a time (the runner rotates them).
 */
export function creditShares(capacity: number, namespaces: Iterable<string>): Map<string, number> {
  const sorted = [...namespaces].sort();
  const shares = new Map<string, number>();
  if (sorted.length === 0) return shares;
  const even = Math.floor(capacity / sorted.length);
  sorted.forEach((namespace, i) => shares.set(namespace, even === 0 ? 1 : even + (i < capacity % sorted.length ? 1 : 0)));
  return shares;
}
