/**
 * `taskwire namespace create|list`, `taskwire keys create|list|revoke` and `taskwire audit list`.
 * They work on the database directly (--database-url, or the embedded PostgreSQL of --data-dir,
 * attached to when a server runs it), so a fresh install can create its first key; whoever can
 * reach the database is an operator. Their actor in audit columns and the audit log is "cli".
 * Results go to stdout, logs to stderr.
 */
import { Command, InvalidArgumentError, Option } from "commander";
import { pino, type Logger } from "pino";
import { createApiKey, createNamespace, listApiKeys, listAuditEvents, listNamespaces, requireNamespaceName, revokeApiKey } from "../auth/key-admin.js";
import { CLI_ACTOR, type ApiKeyRecord } from "../core/api-key.js";
import { parseDurationText } from "../core/duration-text.js";
import { TaskwireError } from "../core/errors.js";
import { parseRoles, type Role } from "../core/roles.js";
import { openEmbeddedForCommand } from "../store/embedded-postgres.js";
import { openDatabase, prepareSchema, type Database } from "../store/orm.js";

/** Where the database is, as every admin command takes it. */
interface DatabaseOptions {
  databaseUrl?: string;
  dataDir: string;
  logLevel: string;
}

/** Logs to stderr, so stdout carries only results (a token can be captured with $(...)). */
function stderrLogger(level: string): Logger {
  return pino({ level, base: { service: "taskwire" } }, pino.destination(2));
}

/** Opens the database (migrating it, as a first server start would), runs `work`, closes everything. */
async function withDatabase<T>(options: DatabaseOptions, work: (database: Database) => Promise<T>): Promise<T> {
  const logger = stderrLogger(options.logLevel);
  const embedded = options.databaseUrl === undefined || options.databaseUrl === "" ? await openEmbeddedForCommand(options.dataDir, logger) : undefined;
  try {
    const database = await openDatabase(embedded?.url ?? options.databaseUrl!, { poolSize: 2 });
    try {
      const applied = await prepareSchema(database, true);
      if (applied.length > 0) logger.info({ migrations: applied }, "applied migrations");
      return await work(database);
    } finally {
      await database.close();
    }
  } finally {
    await embedded?.stop();
  }
}

/** Runs a command; a failure (bad name, unknown key, database unreachable) is printed plainly with exit code 1. */
function action<A extends unknown[]>(run: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await run(...args);
    } catch (error) {
      const message = error instanceof TaskwireError ? error.message : `${(error as Error).message ?? String(error)}`;
      process.stderr.write(`taskwire: ${message}\n`);
      process.exitCode = 1;
    }
  };
}

function rolesOption(value: string): Role[] {
  try {
    return parseRoles(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

function countOption(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${JSON.stringify(value)} is not a positive whole number`);
  return n;
}

function durationOption(value: string): number {
  try {
    return parseDurationText(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

/** One key as a line of `keys list`. */
function keyLine(key: ApiKeyRecord, now: number): string {
  const state = key.revokedAt !== null ? `revoked ${key.revokedAt.toISOString()} by ${key.revokedBy}` : key.expiresAt !== null && key.expiresAt.getTime() <= now ? "expired" : "active";
  return [
    key.id,
    key.namespace,
    key.roles.join(","),
    state,
    `created ${key.createdAt.toISOString()} by ${key.createdBy}`,
    `expires ${key.expiresAt?.toISOString() ?? "never"}`,
    `last used ${key.lastUsedAt?.toISOString() ?? "never"}`,
    key.description === "" ? "" : JSON.stringify(key.description),
  ]
    .filter((field) => field !== "")
    .join("  ");
}

/** Adds the namespace and keys commands to `program`. */
export function addAdminCommands(program: Command, databaseOption: () => Option, dataDirOption: () => Option): void {
  const logLevel = () =>
    new Option("--log-level <level>", "how much to log (on stderr)").choices(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("warn");
  const withDb = (command: Command) => command.addOption(databaseOption()).addOption(dataDirOption()).addOption(logLevel());

  const namespace = program.command("namespace").description("create and list namespaces (on the database directly)");
  withDb(namespace.command("create <name>").description("create a namespace"))
    .action(
      action(async (name: string, options: DatabaseOptions) => {
        await withDatabase(options, async (database) => {
          const created = await createNamespace(database.pool, name, CLI_ACTOR);
          process.stdout.write(`${created.name}\n`);
        });
      }),
    );
  withDb(namespace.command("list").description("list every namespace"))
    .action(
      action(async (options: DatabaseOptions) => {
        await withDatabase(options, async (database) => {
          let after: string | null = null;
          for (;;) {
            const page = await listNamespaces(database.db, after, 500);
            for (const ns of page) process.stdout.write(`${ns.name}  created ${ns.createdAt.toISOString()}${ns.createdBy === null ? "" : ` by ${ns.createdBy}`}\n`);
            if (page.length < 500) break;
            after = page.at(-1)!.name;
          }
        });
      }),
    );

  const keys = program.command("keys").description("create, list and revoke API keys (on the database directly)");
  withDb(
    keys
      .command("create")
      .description("create an API key and print its token (shown only this once)")
      .requiredOption("--namespace <name>", "the namespace the key works in")
      .requiredOption("--role <roles>", "comma-separated: producer, worker, watcher, admin", rolesOption)
      .option("--expires <duration>", "lifetime, e.g. 90d, 12h, 30m (default: never expires)", durationOption)
      .option("--description <text>", "free text to recognise the key by", ""),
  ).action(
    action(async (options: DatabaseOptions & { namespace: string; role: Role[]; expires?: number; description: string }) => {
      await withDatabase(options, async (database) => {
        const { key, token } = await createApiKey(database.pool, {
          namespace: requireNamespaceName("--namespace", options.namespace),
          roles: options.role,
          expiresInMs: options.expires ?? null,
          description: options.description,
          actor: CLI_ACTOR,
        });
        process.stdout.write(`${token}\n`);
        process.stderr.write(
          `created API key ${key.id} in namespace ${key.namespace} with roles ${key.roles.join(",")}, ` +
            `${key.expiresAt === null ? "never expiring" : `expiring ${key.expiresAt.toISOString()}`}; ` +
            "the token above is shown only now (only a hash of it is stored)\n",
        );
      });
    }),
  );
  withDb(
    keys
      .command("list")
      .description("list API keys (never their secrets)")
      .option("--namespace <name>", "only this namespace's keys (default: every namespace)")
      .option("--all", "also list revoked and expired keys"),
  ).action(
    action(async (options: DatabaseOptions & { namespace?: string; all?: boolean }) => {
      await withDatabase(options, async (database) => {
        const namespaces: string[] = [];
        if (options.namespace !== undefined) namespaces.push(requireNamespaceName("--namespace", options.namespace));
        else for (let after: string | null = null, page; (page = await listNamespaces(database.db, after, 500)).length > 0; after = page.at(-1)!.name) namespaces.push(...page.map((n) => n.name));
        const now = Date.now();
        for (const ns of namespaces) {
          for (let afterId: string | null = null, page; (page = await listApiKeys(database.db, { namespace: ns, includeInactive: options.all === true, afterId, limit: 500 })).length > 0; afterId = page.at(-1)!.id) {
            for (const key of page) process.stdout.write(`${keyLine(key, now)}\n`);
            if (page.length < 500) break;
          }
        }
      });
    }),
  );
  withDb(keys.command("revoke <id>").description("revoke an API key: it stops working on every server within seconds")).action(
    action(async (id: string, options: DatabaseOptions) => {
      await withDatabase(options, async (database) => {
        const key = await revokeApiKey(database.pool, { id, namespace: null, actor: CLI_ACTOR });
        process.stdout.write(`${key.id} revoked at ${key.revokedAt!.toISOString()}\n`);
      });
    }),
  );

  const audit = program.command("audit").description("read the admin audit log (on the database directly)");
  withDb(
    audit
      .command("list")
      .description("list audit entries, newest first: namespaces created, API keys created and revoked, and by whom")
      .option("--namespace <name>", "only this namespace's entries (default: every namespace)")
      .option("--limit <n>", "at most this many entries (default: all)", countOption),
  ).action(
    action(async (options: DatabaseOptions & { namespace?: string; limit?: number }) => {
      await withDatabase(options, async (database) => {
        const namespace = options.namespace === undefined ? null : requireNamespaceName("--namespace", options.namespace);
        let left = options.limit ?? Infinity;
        let beforeId: string | null = null;
        while (left > 0) {
          const want = Math.min(500, left);
          const page = await listAuditEvents(database.db, { namespace, beforeId, limit: want });
          for (const entry of page) process.stdout.write(`${entry.at.toISOString()}  ${entry.namespace}  ${entry.action}  ${entry.target}  by ${entry.actor}\n`);
          if (page.length < want) break;
          left -= page.length;
          beforeId = page.at(-1)!.id;
        }
      });
    }),
  );
}
