/** Server settings: defaults, then environment variables, then command-line flags. */
import { availableParallelism, hostname } from "node:os";
import { DEFAULT_SERVER_LIMITS, type ServerLimits } from "./core/limits.js";

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
  /** Due cron schedules are looked for this often (ms). */
  scheduleIntervalMs: number;
  /** A schedule's fire time that no replica reached within this long counts as missed (ms). */
  scheduleGraceMs: number;
  /** Progress is written at most this often per task (ms). */
  progressFlushMs: number;
  /** Idle StreamStatus streams get a keep-alive this often (ms). */
  streamKeepaliveMs: number;
  /** Approximate bytes of recent events kept in memory per watched namespace; watchers further behind read the database. */
  eventBufferBytes: number;
  /** Folder of inline job modules. */
  inlineDir: string;
  /** Most threads running inline tasks (0: no inline job types); default: the machine's cores. */
  inlineMaxThreads: number;
  /** Threads kept when idle. */
  inlineMinThreads: number;
  /** Inline attempts that may wait for a thread before the server stops claiming. */
  inlineMaxQueue: number;
  /** An idle thread above the minimum ends after this long (ms). */
  inlineIdleMs: number;
  /** Heap limit of each inline thread (MiB). */
  inlineMemoryMb: number;
  /** At shutdown, running inline attempts may finish for this long before they are released (ms). */
  inlineGraceMs: number;
  /**
   * Allow binding a non-loopback address with no API key: development mode (every request in
   * "default" with every role) on a network address, for use behind a proxy that authenticates.
   */
  allowUnauthenticatedRemote: boolean;
  /** Never serve requests without a key, even with no key created and a loopback bind. */
  requireAuth: boolean;
  /** PEM certificate and key files: serve TLS (gRPC over HTTP/2 by ALPN, and HTTP/1.1); null: cleartext. */
  tlsCertFile: string | null;
  tlsKeyFile: string | null;
  /** Request, stream and rate limits. */
  limits: ServerLimits;
  /** How long a verified API key is trusted without reading it again (ms): the bound on a missed revocation. */
  keyCacheMs: number;
  /** How often API keys' last use is written (ms). */
  keyUsageFlushMs: number;
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
    scheduleIntervalMs: 1_000,
    scheduleGraceMs: 60_000,
    progressFlushMs: 250,
    streamKeepaliveMs: 15_000,
    eventBufferBytes: 8 * 1024 * 1024,
    inlineDir: env.TASKWIRE_INLINE_DIR ?? "workers",
    inlineMaxThreads: env.TASKWIRE_INLINE_THREADS === undefined ? availableParallelism() : Number(env.TASKWIRE_INLINE_THREADS),
    inlineMinThreads: 1,
    inlineMaxQueue: 32,
    inlineIdleMs: 30_000,
    inlineMemoryMb: 512,
    inlineGraceMs: 5_000,
    allowUnauthenticatedRemote: false,
    requireAuth: envFlag(env, "TASKWIRE_REQUIRE_AUTH"),
    tlsCertFile: env.TASKWIRE_TLS_CERT || null,
    tlsKeyFile: env.TASKWIRE_TLS_KEY || null,
    limits: { ...DEFAULT_SERVER_LIMITS },
    keyCacheMs: 5_000,
    keyUsageFlushMs: 60_000,
  };
}

const FLAG_ON = ["1", "true", "yes", "on"];
const FLAG_OFF = ["0", "false", "no", "off"];

/**
 * An on/off environment variable, in any case; unset or empty is off. Any other word is refused
 * rather than read as off: a security switch (TASKWIRE_REQUIRE_AUTH) set to a word the server did
 * not know, and silently ignored, would leave it in development mode, open to anyone.
 */
export function envFlag(env: NodeJS.ProcessEnv, name: string): boolean {
  const value = (env[name] ?? "").trim().toLowerCase();
  if (value === "" || FLAG_OFF.includes(value)) return false;
  if (FLAG_ON.includes(value)) return true;
  throw new Error(
    `${name} is ${JSON.stringify(env[name]!.slice(0, 40))}; allowed, in any case: ${FLAG_ON.join(", ")} (on), ${FLAG_OFF.join(", ")} or empty (off)`,
  );
}

/** True for addresses only this machine can reach. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** The inline runner's worker id: the host and process, as a valid worker name. */
export function inlineWorkerId(): string {
  return `inline:${hostname().replace(/[^A-Za-z0-9._-]/g, "-").slice(0, 80)}:${process.pid}`;
}
