/** The engine of one replica: dispatch, reports, notifications, job types and task operations. */
import type { Logger } from "pino";
import { Dispatcher } from "../dispatch/dispatcher.js";
import { startReadyListener, type ReadyListener } from "../dispatch/ready-listener.js";
import { LeaseSweeper } from "../dispatch/lease-sweeper.js";
import { ProgressCoalescer } from "../dispatch/progress-coalescer.js";
import { ReportBatcher } from "../dispatch/report-batcher.js";
import { EventHub } from "../events/event-hub.js";
import { InlinePool, type InlinePoolOptions } from "../inline/inline-pool.js";
import { InlineRunner } from "../inline/inline-runner.js";
import { RetentionPruner } from "./retention-pruner.js";
import { Scheduler } from "./scheduler.js";
import { Schedules } from "./schedules.js";
import type { Database } from "../store/orm.js";
import { JobTypeRegistry } from "./job-type-registry.js";
import { Tasks } from "./tasks.js";
import { Authenticator, type AuthenticatorOptions } from "../auth/authenticator.js";

/** Engine settings. */
export interface EngineOptions {
  /** How often dispatch looks for work without a notification (ms). */
  safetyPollMs: number;
  /** How often expired leases and timeouts are swept (ms). */
  sweepIntervalMs: number;
  /** How often finished tasks past their retention are deleted (ms). */
  retentionIntervalMs: number;
  /** How often due cron schedules are looked for (ms). */
  scheduleIntervalMs: number;
  /** A fire time older than this when a scheduler first sees it counts as missed (ms). */
  scheduleGraceMs: number;
  /** The thread pool for inline job types; null runs none. */
  inline: (InlinePoolOptions & { workerId: string; graceMs: number }) | null;
  /** Progress is written at most this often per task (ms), so at most 1000/this progress events per second per task. */
  progressFlushMs: number;
  /** Approximate bytes of recent events kept in memory per watched namespace. */
  eventBufferBytes: number;
  /** API key authentication and development mode. */
  auth: AuthenticatorOptions;
}

/** A running engine. */
export interface Engine {
  database: Database;
  dispatcher: Dispatcher;
  jobTypes: JobTypeRegistry;
  tasks: Tasks;
  listener: ReadyListener;
  sweeper: LeaseSweeper;
  progress: ProgressCoalescer;
  events: EventHub;
  pruner: RetentionPruner;
  /** Fires cron schedules (every replica runs one). */
  scheduler: Scheduler;
  schedules: Schedules;
  /** Runs inline job types on the thread pool; null when the server runs none. */
  inline: InlineRunner | null;
  /** Authenticates requests (API keys, development mode). */
  auth: Authenticator;
  /** Stops dispatch and notifications (streams must be closed first); does not close the database. */
  stop(): Promise<void>;
}

/** Starts the engine on an open, migrated database. */
export function createEngine(database: Database, logger: Logger, options: EngineOptions): Engine {
  const batcher = new ReportBatcher(database.db);
  const jobTypes = new JobTypeRegistry(database.orm, database.db);
  const dispatcher = new Dispatcher({ db: database.db, pool: database.pool, limits: jobTypes, batcher, logger, safetyPollMs: options.safetyPollMs });
  const sweeper = new LeaseSweeper(database.db, logger, options.sweepIntervalMs);
  const pruner = new RetentionPruner(database.db, logger, options.retentionIntervalMs);
  const scheduler = new Scheduler(database.pool, logger, { intervalMs: options.scheduleIntervalMs, graceMs: options.scheduleGraceMs });
  const progress = new ProgressCoalescer(database.db, logger, options.progressFlushMs);
  const events = new EventHub(database.db, logger, options.eventBufferBytes);
  const inline =
    options.inline === null
      ? null
      : new InlineRunner({ db: database.db, dispatcher, pool: new InlinePool({ ...options.inline, onThreadError: (error) => logger.error({ err: error }, "an inline thread failed") }), logger, workerId: options.inline.workerId }, options.safetyPollMs);
  void inline?.refresh();
  const auth = new Authenticator(database.db, logger, options.auth);
  const listener = startReadyListener(
    database.url,
    {
      onReady: (notice) => {
        // A registration (on any replica): its limits may have changed, so the cached copy goes.
        if (notice.changed === true) jobTypes.forget(notice.ns, notice.jt);
        dispatcher.onReady(notice);
      },
      onRevoke: (notice) => dispatcher.onRevoke(notice),
      onEvents: (notice) => events.onNotice(notice),
      onKeys: (notice) => auth.onKeyNotice(notice),
      onLost: (error) => events.fail(error),
      onResync: () => {
        dispatcher.wakeAll();
        events.onResync();
        auth.onResync();
      },
    },
    logger,
  );
  return {
    database,
    dispatcher,
    jobTypes,
    tasks: new Tasks(database.db, database.pool, batcher, dispatcher, logger),
    listener,
    sweeper,
    progress,
    events,
    pruner,
    scheduler,
    schedules: new Schedules(database.db, database.pool),
    inline,
    auth,
    async stop() {
      // Inline attempts finish or go back to PENDING while the dispatcher and database still work.
      await inline?.stop(options.inline?.graceMs ?? 0);
      // Claims in flight for streams that just closed hand their tasks back before the database closes.
      await dispatcher.stop();
      events.stop();
      await Promise.all([sweeper.stop(), pruner.stop(), scheduler.stop(), progress.stop(), listener.close(), auth.stop()]);
    },
  };
}
