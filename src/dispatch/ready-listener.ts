/**
 * LISTENs for the engine's notifications on a dedicated connection (LISTEN needs a session, so
 * never through a transaction-mode pooler) and reconnects with backoff when it drops.
 */
import pg from "pg";
import type { Logger } from "pino";

/**
 * A task of (namespace, jobType) became ready, or will at `at` (epoch ms); or, for a job type with
 * limits, a task counted against them stopped running. `changed`: the job type was registered.
 */
export interface ReadyNotice {
  ns: string;
  jt: string;
  at: number | null;
  changed?: boolean;
}

/** The holder of a running attempt must stop: cancelled, timed out, or its lease was taken back. */
export interface RevokeNotice {
  ns: string;
  id: string;
  attempt: number;
  reason: "cancelled" | "timed_out" | "lease_lost";
  message: string;
}

/** Channel names, shared with the SQL that NOTIFYs. */
export const READY_CHANNEL = "taskwire_ready";
export const REVOKE_CHANNEL = "taskwire_revoke";
export const EVENTS_CHANNEL = "taskwire_events";
/** API key changes (trigger api_key_notify, migration 0010): {"id", "op"}. */
export const KEYS_CHANNEL = "taskwire_keys";

/** A namespace has task events up to `seq`. */
export interface EventsNotice {
  ns: string;
  seq: number | string;
}

/** What the listener calls; `onResync` after a reconnect, since notices may have been missed. */
export interface ListenerHandlers {
  onReady(notice: ReadyNotice): void;
  onRevoke(notice: RevokeNotice): void;
  onEvents(notice: EventsNotice): void;
  onKeys(notice: { id: string; op: string }): void;
  /** The connection dropped: notices may be lost until it is back (then onResync). */
  onLost(error: Error): void;
  onResync(): void;
}

/** A running listener. */
export interface ReadyListener {
  /** Resolves once the first LISTEN is in place. */
  readonly ready: Promise<void>;
  close(): Promise<void>;
}

/** Starts listening on `url`; keeps trying (1 s to 10 s apart) while the database is down. */
export function startReadyListener(url: string, handlers: ListenerHandlers, logger: Logger): ReadyListener {
  let client: pg.Client | undefined;
  let closed = false;
  let retryTimer: NodeJS.Timeout | undefined;
  let failures = 0;
  let resolveReady!: () => void;
  const ready = new Promise<void>((resolve) => (resolveReady = resolve));

  const dispatch = (msg: pg.Notification) => {
    try {
      const payload = JSON.parse(msg.payload ?? "{}");
      if (msg.channel === READY_CHANNEL) handlers.onReady(payload as ReadyNotice);
      else if (msg.channel === REVOKE_CHANNEL) handlers.onRevoke(payload as RevokeNotice);
      else if (msg.channel === EVENTS_CHANNEL) handlers.onEvents(payload as EventsNotice);
      else if (msg.channel === KEYS_CHANNEL) handlers.onKeys(payload as { id: string; op: string });
    } catch (error) {
      logger.error({ err: error, channel: msg.channel }, "could not handle a notification");
    }
  };

  const connect = async () => {
    if (closed) return;
    const next = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
    next.on("notification", dispatch);
    next.on("error", (error) => {
      if (client !== next) return;
      logger.warn({ err: error }, "notification connection lost; reconnecting");
      client = undefined;
      handlers.onLost(error);
      void next.end().catch(() => undefined);
      scheduleReconnect();
    });
    try {
      await next.connect();
      await next.query(`LISTEN ${READY_CHANNEL}; LISTEN ${REVOKE_CHANNEL}; LISTEN ${EVENTS_CHANNEL}; LISTEN ${KEYS_CHANNEL}`);
      if (closed) {
        await next.end();
        return;
      }
      client = next;
      if (failures > 0) logger.info("notification connection restored");
      failures = 0;
      resolveReady();
      handlers.onResync();
    } catch (error) {
      void next.end().catch(() => undefined);
      if (failures === 0) logger.warn({ err: error }, "cannot LISTEN for notifications; retrying");
      scheduleReconnect();
    }
  };

  const scheduleReconnect = () => {
    if (closed) return;
    failures += 1;
    retryTimer = setTimeout(connect, Math.min(10_000, 1_000 * failures));
  };

  void connect();
  return {
    ready,
    async close() {
      closed = true;
      clearTimeout(retryTimer);
      const current = client;
      client = undefined;
      await current?.end().catch(() => undefined);
    },
  };
}
