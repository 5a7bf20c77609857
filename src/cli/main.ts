/** The `taskwire` command: `server start`, `migrate`, `namespace ...`, `keys ...`. */
import { Command, InvalidArgumentError, Option } from "commander";
import { defaultConfig, type ServerConfig } from "../config.js";
import { LIMIT_SPECS, type ServerLimits } from "../core/limits.js";
import { addAdminCommands } from "./admin-commands.js";
import { createLogger } from "../logger.js";
import { startServer } from "../main.js";
import { startEmbeddedPostgres } from "../store/embedded-postgres.js";
import { openDatabase, prepareSchema } from "../store/orm.js";

const defaults = (() => {
  try {
    return defaultConfig();
  } catch (error) {
    // A setting from the environment the server cannot read (e.g. TASKWIRE_REQUIRE_AUTH=maybe): say which, no stack.
    process.stderr.write(`taskwire: ${(error as Error).message}\n`);
    process.exit(2);
  }
})();

function parsePort(value: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port > 65_535) throw new InvalidArgumentError("a port is a whole number from 0 to 65535 (0: any free port)");
  return port;
}

/** A whole number within [min, max]. */
function wholeNumber(min: number, max: number, what: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || n < min || n > max) throw new InvalidArgumentError(`${what} is a whole number from ${min} to ${max}`);
    return n;
  };
}

interface ServerStartOptions {
  host: string;
  port: number;
  databaseUrl?: string;
  dataDir: string;
  migrate: boolean;
  logLevel: string;
  allowUnauthenticatedRemote?: boolean;
  inlineDir: string;
  inlineThreads: number;
  inlineQueue: number;
  inlineMemory: number;
  inlineMinThreads: number;
  inlineIdleMs: number;
  requireAuth?: boolean;
  tlsCert?: string;
  tlsKey?: string;
  keyCacheMs: number;
}

/** The limit flags, one per ServerLimits field, as commander stores them (camel case of the flag). */
const LIMIT_OPTION_NAMES = Object.fromEntries(
  (Object.keys(LIMIT_SPECS) as (keyof ServerLimits)[]).map((name) => [name, LIMIT_SPECS[name].flag.slice(2).replace(/-(\w)/g, (_, c: string) => c.toUpperCase())]),
) as Record<keyof ServerLimits, string>;

/** Runs the server until SIGINT/SIGTERM; exits non-zero when it cannot start or an internal loop crashes. */
async function serverStart(options: ServerStartOptions): Promise<void> {
  const logger = createLogger(options.logLevel);
  const config: ServerConfig = {
    ...defaults,
    host: options.host,
    port: options.port,
    databaseUrl: options.databaseUrl === undefined || options.databaseUrl === "" ? null : options.databaseUrl,
    dataDir: options.dataDir,
    migrate: options.migrate,
    logLevel: options.logLevel,
    allowUnauthenticatedRemote: options.allowUnauthenticatedRemote === true,
    inlineDir: options.inlineDir,
    inlineMaxThreads: options.inlineThreads,
    inlineMaxQueue: options.inlineQueue,
    inlineMemoryMb: options.inlineMemory,
    inlineMinThreads: options.inlineMinThreads,
    inlineIdleMs: options.inlineIdleMs,
    requireAuth: options.requireAuth === true || defaults.requireAuth,
    tlsCertFile: options.tlsCert ?? null,
    tlsKeyFile: options.tlsKey ?? null,
    keyCacheMs: options.keyCacheMs,
    limits: Object.fromEntries(
      (Object.keys(LIMIT_SPECS) as (keyof ServerLimits)[]).map((name) => [name, (options as unknown as Record<string, number>)[LIMIT_OPTION_NAMES[name]]]),
    ) as unknown as ServerLimits,
  };
  // A crash anywhere must take the process down loudly, never leave a half-alive server.
  const crash = (error: unknown) => {
    logger.fatal({ err: error }, "internal error; exiting");
    process.exit(1);
  };
  process.on("uncaughtException", crash);
  process.on("unhandledRejection", crash);

  let server;
  try {
    server = await startServer(config, logger);
  } catch (error) {
    logger.fatal({ err: error }, `cannot start: ${(error as Error).message}`);
    process.exit(1);
  }
  let signals = 0;
  const stop = (signal: string) => {
    signals += 1;
    if (signals > 1) {
      logger.warn("second signal: exiting at once");
      process.exit(130);
    }
    logger.info({ signal }, "shutting down");
    server.stop().then(
      () => {
        logger.info("stopped");
        process.exit(0);
      },
      (error: unknown) => crash(error),
    );
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGHUP", () => stop("SIGHUP"));
}

/** Applies pending migrations and exits. */
async function migrate(options: { databaseUrl?: string; dataDir: string; logLevel: string }): Promise<void> {
  const logger = createLogger(options.logLevel);
  const embedded = options.databaseUrl === undefined || options.databaseUrl === "" ? await startEmbeddedPostgres(options.dataDir, logger) : undefined;
  const database = await openDatabase(embedded?.url ?? options.databaseUrl!);
  try {
    const applied = await prepareSchema(database, true);
    logger.info({ applied }, applied.length === 0 ? "schema already current" : "migrations applied");
  } finally {
    await database.close();
    await embedded?.stop();
  }
}

const databaseOption = () =>
  new Option("--database-url <url>", "PostgreSQL URL; without it an embedded PostgreSQL runs under --data-dir").env("TASKWIRE_DATABASE_URL");
const dataDirOption = () => new Option("--data-dir <dir>", "data folder of the embedded PostgreSQL").default(defaults.dataDir).env("TASKWIRE_DATA_DIR");
const logLevelOption = () =>
  new Option("--log-level <level>", "how much to log").choices(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default(defaults.logLevel).env("TASKWIRE_LOG_LEVEL");

const program = new Command("taskwire").description("Taskwire: a background-job engine served over gRPC, gRPC-Web and Connect").showHelpAfterError();

const server = program.command("server").description("run the Taskwire server");
const start = server
  .command("start")
  .description("serve gRPC, gRPC-Web and Connect on one port until SIGINT/SIGTERM")
  .addOption(new Option("--host <host>", "address to listen on").default(defaults.host).env("TASKWIRE_HOST"))
  .addOption(new Option("--port <port>", "port to listen on (0: any free port)").default(defaults.port).env("TASKWIRE_PORT").argParser(parsePort))
  .addOption(databaseOption())
  .addOption(dataDirOption())
  .option("--no-migrate", "do not apply migrations; fail fast if any is pending")
  .option("--require-auth", "always require an API key, even with no key created yet on a loopback --host (env TASKWIRE_REQUIRE_AUTH=1)")
  .option("--allow-unauthenticated-remote", "with no API key created, serve a non-loopback --host in development mode anyway (behind a proxy that authenticates)")
  .addOption(new Option("--tls-cert <file>", "PEM certificate (chain): serve TLS, HTTP/2 and HTTP/1.1 by ALPN").env("TASKWIRE_TLS_CERT"))
  .addOption(new Option("--tls-key <file>", "PEM private key of --tls-cert").env("TASKWIRE_TLS_KEY"))
  .addOption(
    new Option("--key-cache-ms <ms>", "how long a verified API key is trusted before it is read again: the longest a revocation takes if its notification is lost")
      .default(defaults.keyCacheMs)
      .argParser(wholeNumber(0, 60_000, "--key-cache-ms")),
  )
  .addOption(new Option("--inline-dir <dir>", "folder of inline job modules").default(defaults.inlineDir).env("TASKWIRE_INLINE_DIR"))
  .addOption(
    new Option("--inline-threads <n>", "most threads running inline tasks; the default is the machine's cores (0: no inline job types)")
      .default(defaults.inlineMaxThreads)
      .env("TASKWIRE_INLINE_THREADS")
      .argParser(wholeNumber(0, 256, "--inline-threads")),
  )
  .addOption(
    new Option("--inline-min-threads <n>", "inline threads kept running when idle")
      .default(defaults.inlineMinThreads)
      .argParser(wholeNumber(0, 256, "--inline-min-threads")),
  )
  .addOption(
    new Option("--inline-idle-ms <ms>", "an idle inline thread above the minimum ends after this long")
      .default(defaults.inlineIdleMs)
      .argParser(wholeNumber(0, 86_400_000, "--inline-idle-ms")),
  )
  .addOption(
    new Option("--inline-queue <n>", "inline tasks waiting for a thread before the server stops claiming them")
      .default(defaults.inlineMaxQueue)
      .argParser(wholeNumber(0, 10_000, "--inline-queue")),
  )
  .addOption(
    new Option("--inline-memory <mb>", "heap limit of each inline thread, in MiB")
      .default(defaults.inlineMemoryMb)
      .argParser(wholeNumber(16, 65_536, "--inline-memory")),
  )
  .addOption(logLevelOption());
for (const name of Object.keys(LIMIT_SPECS) as (keyof ServerLimits)[]) {
  const spec = LIMIT_SPECS[name];
  start.addOption(
    new Option(`${spec.flag} <n>`, `${spec.what} (${spec.unit}, ${spec.min} to ${spec.max})`)
      .default(defaults.limits[name])
      .argParser(wholeNumber(spec.min, spec.max, spec.flag)),
  );
}
start.action(serverStart);

program
  .command("migrate")
  .description("apply pending database migrations and exit")
  .addOption(databaseOption())
  .addOption(dataDirOption())
  .addOption(logLevelOption())
  .action(migrate);

addAdminCommands(program, databaseOption, dataDirOption);

await program.parseAsync(process.argv);
