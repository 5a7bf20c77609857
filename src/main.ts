/**
 * The composition root: config -> database (embedded or given) -> schema -> engine -> RPC server.
 * It owns shutdown: one AbortController reaches Connect's handlers, then the server, the engine,
 * the pool and the embedded database close in that order.
 */
import type { Logger } from "pino";
import { inlineWorkerId, isLoopback, type ServerConfig } from "./config.js";
import { createEngine, type Engine } from "./engine/engine.js";
import { startRpcServer } from "./server/server.js";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "./store/embedded-postgres.js";
import { openDatabase, prepareSchema, type Database } from "./store/orm.js";

/** A running Taskwire server. */
export interface RunningServer {
  port: number;
  url: string;
  engine: Engine;
  /** Graceful stop: stop accepting, end streams, close the database. Idempotent. */
  stop(): Promise<void>;
}

/** Starts a server; on any failure, everything started so far is stopped again before rethrowing. */
export async function startServer(config: ServerConfig, logger: Logger): Promise<RunningServer> {
  if (!isLoopback(config.host) && !config.allowUnauthenticatedRemote) {
    throw new Error(
      `refusing to listen on ${config.host}: requests are not authenticated yet, so only loopback addresses are allowed; ` +
        `use --host 127.0.0.1, or --allow-unauthenticated-remote behind a proxy that authenticates`,
    );
  }
  const cleanups: (() => Promise<void>)[] = [];
  const unwind = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch((error: unknown) => logger.error({ err: error }, "shutdown step failed"));
    cleanups.length = 0;
  };
  try {
    let url = config.databaseUrl;
    if (url === null) {
      const embedded: EmbeddedDatabase = await startEmbeddedPostgres(config.dataDir, logger);
      cleanups.push(() => embedded.stop());
      url = embedded.url;
    }
    const database: Database = await openDatabase(url);
    cleanups.push(() => database.close());
    const applied = await prepareSchema(database, config.migrate);
    if (applied.length > 0) logger.info({ migrations: applied }, "applied migrations");
    const engine = createEngine(database, logger, {
      safetyPollMs: config.safetyPollMs,
      sweepIntervalMs: config.sweepIntervalMs,
      retentionIntervalMs: config.retentionIntervalMs,
      scheduleIntervalMs: config.scheduleIntervalMs,
      scheduleGraceMs: config.scheduleGraceMs,
      progressFlushMs: config.progressFlushMs,
      eventBufferBytes: config.eventBufferBytes,
      inline:
        config.inlineMaxThreads === 0
          ? null
          : {
              dir: config.inlineDir,
              maxThreads: config.inlineMaxThreads,
              minThreads: config.inlineMinThreads,
              maxQueue: config.inlineMaxQueue,
              idleTimeoutMs: config.inlineIdleMs,
              memoryMb: config.inlineMemoryMb,
              graceMs: config.inlineGraceMs,
              workerId: inlineWorkerId(),
            },
    });
    cleanups.push(() => engine.stop());
    const shutdown = new AbortController();
    const server = await startRpcServer(engine, logger, {
      host: config.host,
      port: config.port,
      shutdownSignal: shutdown.signal,
      streamKeepaliveMs: config.streamKeepaliveMs,
    });
    cleanups.push(async () => {
      shutdown.abort();
      await server.close();
    });
    const address = `http://${server.host.includes(":") ? `[${server.host}]` : server.host}:${server.port}`;
    logger.info({ url: address }, "taskwire listening (gRPC, gRPC-Web and Connect on one port)");
    let stopping: Promise<void> | undefined;
    return {
      port: server.port,
      url: address,
      engine,
      stop: () => (stopping ??= unwind()),
    };
  } catch (error) {
    await unwind();
    throw error;
  }
}
