/**
 * Fans task events out to this replica's watchers. The event rows are the truth: a NOTIFY only
 * says "namespace N has events up to S", and the hub reads the new rows once per namespace (not
 * per watcher), and only for namespaces someone watches. Each watcher has a bounded queue; one
 * that falls behind stops taking live events and catches up from the database on its own, so a
 * slow reader never grows memory or slows the others.
 */
import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import type { EventFilter, TaskEventRecord } from "../core/task.js";
import type { Db } from "../store/db.js";
import { namespaceEventSeq, taskEventRange } from "../store/sql/task-event-read.js";

/** Events read per statement by the hub. */
const FETCH_BATCH = 1_000;

/** True when the event passes the filter. */
export function matchesFilter(filter: EventFilter, event: TaskEventRecord): boolean {
  return (
    (filter.taskIds.length === 0 || filter.taskIds.includes(event.taskId)) &&
    (filter.jobTypes.length === 0 || filter.jobTypes.includes(event.jobType)) &&
    (filter.states.length === 0 || filter.states.includes(event.state))
  );
}

/** One watcher's live feed. */
export class Watcher {
  /** Matching events not yet consumed, oldest first. */
  readonly queue: TaskEventRecord[] = [];
  /** Every event up to here is in the queue, consumed, or did not match. */
  position: bigint;
  /** Behind the live feed: the consumer must catch up from the database before rejoining. */
  lagging = true;
  closed = false;
  private waiter: (() => void) | undefined;

  constructor(
    readonly namespace: string,
    readonly filter: EventFilter,
    position: bigint,
    private readonly maxBuffered: number,
  ) {
    this.position = position;
  }

  /** The hub offers the events in (from, to]: all of the namespace's events in that range. */
  offer(from: bigint, to: bigint, events: readonly TaskEventRecord[]): void {
    if (this.closed || this.lagging) return;
    if (this.position < from) {
      this.fallBehind();
      return;
    }
    const matching = events.filter((e) => e.seq > this.position && matchesFilter(this.filter, e));
    if (this.queue.length + matching.length > this.maxBuffered) {
      this.fallBehind();
      return;
    }
    this.queue.push(...matching);
    if (to > this.position) this.position = to;
    if (matching.length > 0) this.wake();
  }

  /** Resolves when there is something to do, or after `ms` (false), or when `signal` aborts. */
  waitForWork(ms: number, signal: AbortSignal): Promise<boolean> {
    if (this.queue.length > 0 || this.lagging || this.closed || signal.aborted) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (worked: boolean) => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        this.waiter = undefined;
        resolve(worked);
      };
      const onAbort = () => done(true);
      const timer = setTimeout(() => done(false), ms);
      signal.addEventListener("abort", onAbort, { once: true });
      this.waiter = () => done(true);
    });
  }

  /** Wakes a waiting consumer. */
  wake(): void {
    this.waiter?.();
  }

  private fallBehind(): void {
    // Queued events stay: they are contiguous up to `position`, and catch-up continues from there.
    this.lagging = true;
    this.wake();
  }
}

interface NamespaceFeed {
  watchers: Set<Watcher>;
  /** Events up to here were offered to the watchers; null until read from the database. */
  cursor: bigint | null;
  /** The highest sequence a notification announced. */
  target: bigint;
  fetching: Promise<void> | undefined;
  ready: Promise<void>;
}

/** Typed events for tests. */
export interface HubEvents {
  "hub:delivered": [string, bigint];
}

/** The replica's event fan-out. */
export class EventHub extends EventEmitter<HubEvents> {
  private readonly feeds = new Map<string, NamespaceFeed>();

  constructor(
    private readonly db: Db,
    private readonly logger: Logger,
    private readonly maxBuffered: number,
  ) {
    super();
  }

  /** Registers a watcher that has seen everything up to `position` (it starts by catching up). */
  subscribe(namespace: string, filter: EventFilter, position: bigint): Watcher {
    const watcher = new Watcher(namespace, filter, position, this.maxBuffered);
    let feed = this.feeds.get(namespace);
    if (feed === undefined) {
      const created: NamespaceFeed = { watchers: new Set(), cursor: null, target: 0n, fetching: undefined, ready: Promise.resolve() };
      created.ready = namespaceEventSeq(this.db, namespace).then(
        (seq) => {
          created.cursor = seq;
          if (created.target > seq) this.fetch(namespace, created);
        },
        (error: unknown) => {
          this.logger.warn({ err: error, namespace }, "could not start following events; retrying with the next notification");
        },
      );
      this.feeds.set(namespace, created);
      feed = created;
    }
    feed.watchers.add(watcher);
    return watcher;
  }

  /** Removes a watcher; a namespace nobody watches is no longer read. */
  unsubscribe(watcher: Watcher): void {
    watcher.closed = true;
    watcher.wake();
    const feed = this.feeds.get(watcher.namespace);
    if (feed === undefined) return;
    feed.watchers.delete(watcher);
    if (feed.watchers.size === 0) this.feeds.delete(watcher.namespace);
  }

  /** The sequence up to which live events were offered in a namespace; null when not known yet. */
  async cursorOf(namespace: string): Promise<bigint | null> {
    const feed = this.feeds.get(namespace);
    if (feed === undefined) return null;
    await feed.ready;
    return feed.cursor;
  }

  /** A NOTIFY: the namespace has events up to `seq`. */
  onNotice(notice: { ns: string; seq: number | string }): void {
    const feed = this.feeds.get(notice.ns);
    if (feed === undefined) return;
    const seq = BigInt(notice.seq);
    if (seq > feed.target) feed.target = seq;
    this.fetch(notice.ns, feed);
  }

  /** After the notification connection was lost: look for what was missed. */
  onResync(): void {
    for (const [namespace, feed] of this.feeds) {
      void namespaceEventSeq(this.db, namespace).then(
        (seq) => this.onNotice({ ns: namespace, seq: seq.toString() }),
        () => undefined,
      );
      void feed;
    }
  }

  /** The longest queue of any watcher (for metrics and tests: bounded by the buffer size). */
  get longestQueue(): number {
    let n = 0;
    for (const feed of this.feeds.values()) for (const w of feed.watchers) n = Math.max(n, w.queue.length);
    return n;
  }

  /** Number of watchers (for metrics and tests). */
  get watcherCount(): number {
    let n = 0;
    for (const feed of this.feeds.values()) n += feed.watchers.size;
    return n;
  }

  /** Reads and offers events up to the feed's target; one read loop per namespace at a time. */
  private fetch(namespace: string, feed: NamespaceFeed): void {
    if (feed.fetching !== undefined || feed.cursor === null) return;
    feed.fetching = (async () => {
      try {
        while (feed.cursor !== null && feed.cursor < feed.target && this.feeds.get(namespace) === feed) {
          const from = feed.cursor;
          const events = await taskEventRange(this.db, namespace, from, feed.target, FETCH_BATCH);
          const to = events.length === FETCH_BATCH ? events.at(-1)!.seq : feed.target;
          for (const watcher of [...feed.watchers]) {
            try {
              watcher.offer(from, to, events);
            } catch (error) {
              this.logger.error({ err: error }, "a watcher failed to take events; others carry on");
            }
          }
          feed.cursor = to;
          this.emit("hub:delivered", namespace, to);
        }
      } catch (error) {
        this.logger.warn({ err: error, namespace }, "could not read events; the next notification retries");
      } finally {
        feed.fetching = undefined;
      }
    })();
  }
}
