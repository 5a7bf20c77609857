/** Server settings: defaults, then environment variables, then command-line flags. */

/** Everything the server needs to start; tests build one directly. */
export interface ServerConfig {
  host: string;
  port: number;
  /** PostgreSQL URL; null starts the embedded PostgreSQL under dataDir. */
  databaseUrl: string | null;
  /** Folder of the embedded PostgreSQL's data. */
  dataDir: string;
  /** Apply pending migrations at start (else fail fast naming them). */
  migrate: boolean;
  logLevel: string;
  /** Dispatch looks for work this often without a notification (ms). */
  safetyPollMs: number;
  /** Expired leases and timeouts are swept this often (ms). */
  sweepIntervalMs: number;
  /** Finished tasks past their job type's retention are deleted this often (ms). */
  retentionIntervalMs: number;
  /** Progress is written at most this often per task (ms). */
  progressFlushMs: number;
  /** Idle StreamStatus streams get a keep-alive this often (ms). */
  streamKeepaliveMs: number;
  /** Approximate bytes of recent events kept in memory per watched namespace; watchers further behind read the database. */
  eventBufferBytes: number;
  /** Allow binding a non-loopback address although requests are not authenticated. */
  allowUnauthenticatedRemote: boolean;
}

/** The defaults, with environment overrides (TASKWIRE_*). */
export function defaultConfig(env: NodeJS.ProcessEnv = process.env): ServerConfig {
  return {
    host: env.TASKWIRE_HOST ?? "127.0.0.1",
    port: 8080,
    databaseUrl: env.TASKWIRE_DATABASE_URL || null,
    dataDir: env.TASKWIRE_DATA_DIR ?? ".taskwire",
    migrate: true,
    logLevel: env.TASKWIRE_LOG_LEVEL ?? "info",
    safetyPollMs: 5_000,
    sweepIntervalMs: 1_000,
    retentionIntervalMs: 60_000,
    progressFlushMs: 250,
    streamKeepaliveMs: 15_000,
    eventBufferBytes: 8 * 1024 * 1024,
    allowUnauthenticatedRemote: false,
  };
}

/** True for addresses only this machine can reach. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}
