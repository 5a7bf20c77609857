/**
 * The composition root: config -> database (embedded or given) -> schema -> engine -> RPC server.
 * It owns shutdown: one AbortController reaches Connect's handlers, then the server, the engine,
 * the pool and the embedded database close in that order.
 */
import { readFile } from "node:fs/promises";
import type { Logger } from "pino";
import { inlineWorkerId, isLoopback, type ServerConfig } from "./config.js";
import { serverLimitProblems } from "./core/limits.js";
import type { TlsFiles } from "./server/http-server.js";
import { createEngine, type Engine } from "./engine/engine.js";
import { startRpcServer, type RpcServer } from "./server/server.js";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "./store/embedded-postgres.js";
import { openDatabase, prepareSchema, type Database } from "./store/orm.js";

/** A running Taskwire server. */
export interface RunningServer {
  port: number;
  /** http://host:port, or https:// with TLS. */
  url: string;
  engine: Engine;
  rpc: RpcServer;
  /** Graceful stop: stop accepting, end streams, close the database. Idempotent. */
  stop(): Promise<void>;
}

/** Starts a server; on any failure, everything started so far is stopped again before rethrowing. */
export async function startServer(config: ServerConfig, logger: Logger): Promise<RunningServer> {
  const problems = serverLimitProblems(config.limits);
  if (problems.length > 0) throw new Error(`invalid limits: ${problems.join("; ")}`);
  if (config.requireAuth && config.allowUnauthenticatedRemote) {
    throw new Error("--require-auth and --allow-unauthenticated-remote contradict each other: keep one");
  }
  const tls = await readTlsFiles(config);
  const loopback = isLoopback(config.host);
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
      auth: {
        devModeAllowed: !config.requireAuth && (loopback || config.allowUnauthenticatedRemote),
        cacheMs: config.keyCacheMs,
        usageFlushMs: config.keyUsageFlushMs,
        recheckMs: 10_000,
      },
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
    await engine.auth.start();
    if (!loopback && !config.allowUnauthenticatedRemote && !engine.auth.keyExists) {
      throw new Error(
        `refusing to listen on ${config.host}: no API key exists, so no request could be authenticated. ` +
          `Create one first, on the same database: \`taskwire keys create --namespace default --role admin ${config.databaseUrl === null ? `--data-dir ${config.dataDir}` : "--database-url <url>"}\` ` +
          "(it prints the token), or listen on a loopback address (--host 127.0.0.1)",
      );
    }
    if (!loopback && config.allowUnauthenticatedRemote && engine.auth.devMode) {
      logger.warn({ host: config.host }, "--allow-unauthenticated-remote: anyone who reaches this address may do anything in namespace \"default\" until an API key is created");
    }
    const shutdown = new AbortController();
    const server = await startRpcServer(engine, logger, {
      host: config.host,
      port: config.port,
      shutdownSignal: shutdown.signal,
      streamKeepaliveMs: config.streamKeepaliveMs,
      limits: config.limits,
      tls,
    });
    cleanups.push(async () => {
      shutdown.abort();
      await server.close();
    });
    const address = `${tls === null ? "http" : "https"}://${server.host.includes(":") ? `[${server.host}]` : server.host}:${server.port}`;
    logger.info({ url: address }, "taskwire listening (gRPC, gRPC-Web and Connect on one port)");
    let stopping: Promise<void> | undefined;
    return {
      port: server.port,
      url: address,
      engine,
      rpc: server,
      stop: () => (stopping ??= unwind()),
    };
  } catch (error) {
    await unwind();
    throw error;
  }
}

/** Reads the TLS certificate and key, or null for cleartext; both or neither must be given. */
async function readTlsFiles(config: ServerConfig): Promise<TlsFiles | null> {
  if (config.tlsCertFile === null && config.tlsKeyFile === null) return null;
  if (config.tlsCertFile === null || config.tlsKeyFile === null) {
    throw new Error("TLS needs both --tls-cert and --tls-key (PEM files)");
  }
  const read = (file: string, flag: string) =>
    readFile(file).catch((error: unknown) => {
      throw new Error(`cannot read ${flag} ${file}: ${(error as Error).message}`);
    });
  return { cert: await read(config.tlsCertFile, "--tls-cert"), key: await read(config.tlsKeyFile, "--tls-key") };
}
