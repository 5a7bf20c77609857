/**
 * The recent events of one namespace, shared by all of a replica's watchers of it: each watcher is
 * only a position in this log, so a slow one holds no memory of its own. Bounded by size; a watcher
 * whose position has been trimmed away reads from the database instead. Pure: no I/O.
 */
import type { EventFilter, TaskEventRecord } from "../core/task.js";

/** True when the event passes the filter. */
export function matchesFilter(filter: EventFilter, event: TaskEventRecord): boolean {
  return (
    (filter.taskIds.length === 0 || filter.taskIds.includes(event.taskId)) &&
    (filter.jobTypes.length === 0 || filter.jobTypes.includes(event.jobType)) &&
    (filter.states.length === 0 || filter.states.includes(event.state))
  );
}

/** Approximate bytes an event holds in memory (its strings dominate). */
export function eventSize(event: TaskEventRecord): number {
  return 200 + 2 * (event.jobType.length + event.taskId.length + event.progressMessage.length + (event.error?.length ?? 0) + (event.workerId?.length ?? 0));
}

/** What a watcher at some position can read. */
export type RingRead =
  /** Matching events after the position (possibly none), and the position reached. */
  | { kind: "events"; events: TaskEventRecord[]; position: bigint }
  /** The position is older than the ring: read from the database first. */
  | { kind: "behind" };

export class EventRing {
  private events: TaskEventRecord[] = [];
  private bytes = 0;
  /** Every event in (start, end] is held, in sequence order. */
  private startSeq: bigint;
  private endSeq: bigint;

  constructor(
    position: bigint,
    private readonly maxBytes: number,
  ) {
    this.startSeq = position;
    this.endSeq = position;
  }

  get start(): bigint {
    return this.startSeq;
  }

  get end(): bigint {
    return this.endSeq;
  }

  get size(): { events: number; bytes: number } {
    return { events: this.events.length, bytes: this.bytes };
  }

  /** Appends all events in (end, to], oldest first; then trims the oldest beyond the size bound. */
  append(to: bigint, events: readonly TaskEventRecord[]): void {
    if (to <= this.endSeq) return;
    for (const event of events) {
      if (event.seq <= this.endSeq || event.seq > to) continue;
      this.events.push(event);
      this.bytes += eventSize(event);
    }
    this.endSeq = to;
    let drop = 0;
    while (this.bytes > this.maxBytes && drop < this.events.length) this.bytes -= eventSize(this.events[drop++]!);
    if (drop > 0) {
      this.startSeq = this.events[drop - 1]!.seq;
      this.events = this.events.slice(drop);
    }
  }

  /** Up to `max` events after `position` that match, and how far that read got. */
  read(position: bigint, filter: EventFilter, max: number): RingRead {
    if (position < this.startSeq) return { kind: "behind" };
    const found: TaskEventRecord[] = [];
    for (let i = this.firstAfter(position); i < this.events.length; i++) {
      const event = this.events[i]!;
      if (!matchesFilter(filter, event)) continue;
      found.push(event);
      if (found.length === max) return { kind: "events", events: found, position: event.seq };
    }
    return { kind: "events", events: found, position: position > this.endSeq ? position : this.endSeq };
  }

  /** Index of the first held event with a sequence above `position` (binary search). */
  private firstAfter(position: bigint): number {
    let low = 0;
    let high = this.events.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.events[mid]!.seq <= position) low = mid + 1;
      else high = mid;
    }
    return low;
  }
}
