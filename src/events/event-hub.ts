/**
 * Fans task events out to this replica's watchers. The event rows are the truth: a NOTIFY only
 * says "namespace N has events up to S", and the hub reads the new rows once per namespace (not
 * per watcher), and only for namespaces someone watches, into an EventRing that all of the
 * namespace's watchers read from at their own pace. A watcher is a position: a slow one holds no
 * memory, and one that falls out of the ring catches up from the database (a few at a time).
 */
import { EventEmitter } from "node:events";
import pLimit, { type LimitFunction } from "p-limit";
import type { Logger } from "pino";
import type { EventFilter, TaskEventRecord } from "../core/task.js";
import type { Db } from "../store/db.js";
import { namespaceEventSeq, taskEventRange } from "../store/sql/task-event-read.js";
import { EventRing, type RingRead } from "./event-ring.js";

export { matchesFilter } from "./event-ring.js";

/** Events read per statement by the hub. */
const FETCH_BATCH = 1_000;

/** Watched namespaces are checked this often for events no notification announced (a safety net, like the dispatcher's poll). */
const RESYNC_MS = 5_000;

/** Catch-up reads run at once per replica: a herd of lagging watchers queues here, not in the connection pool. */
const CATCH_UP_CONCURRENCY = 4;

/** One watcher: where it is in its namespace's events, and what it took but has not sent yet. */
export class Watcher {
  /** Taken from the ring or the database, not yet consumed (at most one read's worth). */
  readonly queue: TaskEventRecord[] = [];
  closed = false;
  /** Set when the watcher may have missed events (the database connection was lost): it must end and resume. */
  failure: Error | undefined;

  constructor(
    readonly namespace: string,
    readonly filter: EventFilter,
    /** Every event up to here is in the queue, consumed, or did not match. */
    public position: bigint,
  ) {}
}

interface NamespaceFeed {
  watchers: Set<Watcher>;
  /** Null until the starting sequence was read from the database. */
  ring: EventRing | null;
  /** The highest sequence a notification announced. */
  target: bigint;
  fetching: Promise<void> | undefined;
  /** The read of the starting sequence, while it runs (retried after a failure). */
  starting: Promise<void> | undefined;
  /** Consumers waiting for the ring to grow. */
  waiters: Set<() => void>;
}

/** Typed events for tests. */
export interface HubEvents {
  "hub:delivered": [string, bigint];
}

/** What a watcher's consumer does next. */
export type HubRead = RingRead | { kind: "not-started" };

/** The replica's event fan-out. */
export class EventHub extends EventEmitter<HubEvents> {
  private readonly feeds = new Map<string, NamespaceFeed>();
  /** Runs watchers' catch-up reads, a few at a time. */
  readonly catchUpSlots: LimitFunction = pLimit(CATCH_UP_CONCURRENCY);
  private readonly resyncTimer: NodeJS.Timeout;

  constructor(
    private readonly db: Db,
    private readonly logger: Logger,
    /** Approximate bytes of recent events kept per watched namespace. */
    private readonly ringBytes: number,
  ) {
    super();
    this.resyncTimer = setInterval(() => this.onResync(), RESYNC_MS);
    this.resyncTimer.unref();
  }

  /** Stops the safety net (watchers end with their streams). */
  stop(): void {
    clearInterval(this.resyncTimer);
  }

  /** Registers a watcher that has seen everything up to `position`. */
  subscribe(namespace: string, filter: EventFilter, position: bigint): Watcher {
    const watcher = new Watcher(namespace, filter, position);
    let feed = this.feeds.get(namespace);
    if (feed === undefined) {
      feed = { watchers: new Set(), ring: null, target: 0n, fetching: undefined, starting: undefined, waiters: new Set() };
      this.feeds.set(namespace, feed);
      void this.start(namespace, feed);
    }
    feed.watchers.add(watcher);
    return watcher;
  }

  /** Removes a watcher; a namespace nobody watches is no longer read, and its ring is freed. */
  unsubscribe(watcher: Watcher): void {
    watcher.closed = true;
    const feed = this.feeds.get(watcher.namespace);
    if (feed === undefined || !feed.watchers.delete(watcher)) return;
    if (feed.watchers.size === 0) this.feeds.delete(watcher.namespace);
    for (const wake of feed.waiters) wake();
  }

  /**
   * Moves up to `max` matching events after the watcher's position from the ring into its queue.
   * "behind": the ring no longer holds its position; "not-started": the feed has no starting point yet.
   */
  read(watcher: Watcher, max: number): HubRead {
    const ring = this.feeds.get(watcher.namespace)?.ring;
    if (ring === null || ring === undefined) return { kind: "not-started" };
    const result = ring.read(watcher.position, watcher.filter, max);
    if (result.kind === "events") {
      watcher.queue.push(...result.events);
      watcher.position = result.position;
    }
    return result;
  }

  /** Resolves true when the ring has events past the watcher's position (or it closed), false after `ms`. */
  waitForEvents(watcher: Watcher, ms: number, signal: AbortSignal): Promise<boolean> {
    const feed = this.feeds.get(watcher.namespace);
    const ready = () =>
      watcher.closed || watcher.failure !== undefined || signal.aborted || feed === undefined || (feed.ring !== null && feed.ring.end > watcher.position);
    if (ready()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (worked: boolean) => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        feed!.waiters.delete(wake);
        resolve(worked);
      };
      const wake = () => {
        if (ready()) done(true);
      };
      const onAbort = () => done(true);
      const timer = setTimeout(() => done(false), ms);
      signal.addEventListener("abort", onAbort, { once: true });
      feed!.waiters.add(wake);
    });
  }

  /** Starts the namespace's feed if it is not running; resolves when it runs or the attempt failed. */
  async started(namespace: string): Promise<boolean> {
    const feed = this.feeds.get(namespace);
    if (feed === undefined) return false;
    if (feed.ring === null) await this.start(namespace, feed);
    return feed.ring !== null;
  }

  /** A NOTIFY: the namespace has events up to `seq`. */
  onNotice(notice: { ns: string; seq: number | string }): void {
    const feed = this.feeds.get(notice.ns);
    if (feed === undefined) return;
    const seq = BigInt(notice.seq);
    if (seq > feed.target) feed.target = seq;
    if (feed.ring === null) void this.start(notice.ns, feed);
    else this.fetch(notice.ns, feed);
  }

  /** After the notification connection was lost, and every few seconds: look for what no notification announced. */
  onResync(): void {
    for (const namespace of this.feeds.keys()) {
      void namespaceEventSeq(this.db, namespace).then(
        (seq) => this.onNotice({ ns: namespace, seq: seq.toString() }),
        (error: unknown) => this.fail(error instanceof Error ? error : new Error(String(error)), namespace),
      );
    }
  }

  /**
   * The database cannot be reached (the notification connection dropped, or a check failed): the
   * watchers of `namespace` (all when unset) may miss events from now on, so each ends once it has
   * sent what it holds, and its client resumes from its last cursor without a gap.
   */
  fail(error: Error, namespace?: string): void {
    for (const [ns, feed] of this.feeds) {
      if (namespace !== undefined && ns !== namespace) continue;
      for (const watcher of feed.watchers) watcher.failure ??= error;
      for (const wake of [...feed.waiters]) wake();
    }
  }

  /** The longest unconsumed queue of any watcher (for metrics and tests). */
  get longestQueue(): number {
    let n = 0;
    for (const feed of this.feeds.values()) for (const w of feed.watchers) n = Math.max(n, w.queue.length);
    return n;
  }

  /** Memory held by a namespace's ring (for metrics and tests). */
  ringSize(namespace: string): { events: number; bytes: number } {
    return this.feeds.get(namespace)?.ring?.size ?? { events: 0, bytes: 0 };
  }

  /** A namespace's watchers (for metrics and tests). */
  watchersOf(namespace: string): readonly Watcher[] {
    return [...(this.feeds.get(namespace)?.watchers ?? [])];
  }

  /** Number of watchers (for metrics and tests). */
  get watcherCount(): number {
    let n = 0;
    for (const feed of this.feeds.values()) n += feed.watchers.size;
    return n;
  }

  /** Reads where the feed starts: the namespace's sequence now. One read at a time; a failed one is retried by the next caller. */
  private start(namespace: string, feed: NamespaceFeed): Promise<void> {
    feed.starting ??= namespaceEventSeq(this.db, namespace).then(
      (seq) => {
        feed.starting = undefined;
        feed.ring = new EventRing(seq, this.ringBytes);
        if (feed.target > seq) this.fetch(namespace, feed);
      },
      (error: unknown) => {
        feed.starting = undefined;
        this.logger.warn({ err: error, namespace }, "could not start following events; retrying with the next notification or watcher");
      },
    );
    return feed.starting;
  }

  /** Reads events up to the feed's target into the ring; one read loop per namespace at a time. */
  private fetch(namespace: string, feed: NamespaceFeed): void {
    if (feed.fetching !== undefined || feed.ring === null || feed.ring.end >= feed.target) return;
    // .finally runs after this assignment even when the loop has nothing to do; clearing the flag
    // inside the loop's own finally would run first and leave it set forever.
    feed.fetching = this.readInto(namespace, feed, feed.ring).finally(() => {
      feed.fetching = undefined;
    });
  }

  private async readInto(namespace: string, feed: NamespaceFeed, ring: EventRing): Promise<void> {
    try {
      while (ring.end < feed.target && this.feeds.get(namespace) === feed) {
        // The target as of the read: a notification arriving meanwhile raises feed.target past what was read.
        const upTo = feed.target;
        const events = await taskEventRange(this.db, namespace, ring.end, upTo, FETCH_BATCH);
        ring.append(events.length === FETCH_BATCH ? events.at(-1)!.seq : upTo, events);
        for (const wake of [...feed.waiters]) wake();
        this.emit("hub:delivered", namespace, ring.end);
      }
    } catch (error) {
      this.logger.warn({ err: error, namespace }, "could not read events; the next notification retries");
    }
  }
}
