/** Opens the database: MikroORM for entities and migrations, its pg pool for the hot-path SQL. */
import { Migrator } from "@mikro-orm/migrations";
import { MikroORM } from "@mikro-orm/postgresql";
import { createHash } from "node:crypto";
import type pg from "pg";
import { TaskwireError } from "../core/errors.js";
import type { Db } from "./db.js";
import { ENTITIES } from "./entities/index.js";
import { MIGRATIONS } from "./migrations/index.js";

/** An open database: the ORM, and the same connection pool as a plain `Db` for explicit SQL. */
export interface Database {
  orm: MikroORM;
  pool: pg.Pool;
  db: Db;
  /** The connection URL (for LISTEN, which needs a dedicated connection). */
  url: string;
  close(): Promise<void>;
}

/** Opens a pool on `url`; connects lazily. */
export async function openDatabase(url: string, options: { poolSize?: number } = {}): Promise<Database> {
  // MikroORM parses the URL with `new URL`, stricter than libpq: a user with an empty host is refused.
  // The URL itself is not repeated: it may hold a password.
  if (!URL.canParse(url)) {
    throw new TaskwireError("INVALID_ARGUMENT", "the database URL is not a valid URL; for a Unix socket, name a host and give the socket folder as ?host=, e.g. postgresql://postgres@localhost/taskwire?host=/var/run/postgresql");
  }
  const orm = await MikroORM.init({
    clientUrl: url,
    entities: ENTITIES,
    extensions: [Migrator],
    pool: { min: 0, max: options.poolSize ?? 10, idleTimeoutMillis: 30_000 },
    // MikroORM reads only host, port, user, password and database from clientUrl. pg reads the
    // whole URL (?host= for a Unix socket, sslmode, application_name, ...), as the LISTEN
    // connection does, so the pool and LISTEN connect the same way.
    driverOptions: { connectionString: url, connectionTimeoutMillis: 5_000 },
    debug: false,
    ensureDatabase: false,
    migrations: { migrationsList: MIGRATIONS, snapshot: false, silent: true },
  });
  const pool = (await orm.em.getConnection().getNativeClient()) as pg.Pool;
  return {
    orm,
    pool,
    db: poolDb(pool),
    url,
    // Bounded: a connection lost inside a MikroORM transaction is never returned to the pool,
    // and the pool's end() would wait for it forever.
    close: () => Promise.race([orm.close(), new Promise<void>((resolve) => setTimeout(resolve, 5_000).unref())]),
  };
}

/** A Db running each query on any pooled connection (single statements commit on their own). */
export function poolDb(pool: pg.Pool | pg.PoolClient): Db {
  return {
    async query<Row>(text: string, values?: readonly unknown[]) {
      // Named, so each connection parses and plans a statement once and reuses it (planning the
      // claim and completion statements was a tenth of the database's time per task).
      const name = statementName(text);
      const result = await pool.query(name === undefined ? { text, values: values as unknown[] | undefined } : { name, text, values: values as unknown[] | undefined });
      return result.rows as Row[];
    },
  };
}

const statementNames = new Map<string, string>();
/** The application's statements are a few dozen fixed texts; anything beyond this runs unprepared. */
const MAX_PREPARED = 500;

/** A prepared statement's name: the same text always gets the same name, different texts never share one. */
function statementName(text: string): string | undefined {
  let name = statementNames.get(text);
  if (name === undefined && statementNames.size < MAX_PREPARED) {
    name = `tw_${createHash("sha1").update(text).digest("hex").slice(0, 20)}`;
    statementNames.set(text, name);
  }
  return name;
}

/** Runs `work` in one transaction on one pooled connection; rolls back if it throws. */
export async function withTransaction<T>(pool: pg.Pool, work: (db: Db) => Promise<T>, options: { repeatableRead?: boolean } = {}): Promise<T> {
  const client = await pool.connect();
  // A connection whose ROLLBACK fails is broken (server gone): destroy it instead of pooling it.
  let broken = false;
  try {
    await client.query(options.repeatableRead === true ? "BEGIN ISOLATION LEVEL REPEATABLE READ" : "BEGIN");
    const result = await work(poolDb(client));
    await client.query("COMMIT");
    return result;
  } catch (error) {
    await client.query("ROLLBACK").catch(() => (broken = true));
    throw error;
  } finally {
    client.release(broken);
  }
}

/**
 * Applies pending migrations, or with `migrate` false fails fast naming the ones missing, so a
 * server never runs against a schema it does not understand.
 */
export async function prepareSchema(database: Database, migrate: boolean): Promise<string[]> {
  const migrator = database.orm.migrator;
  if (migrate) return (await migrator.up()).map((m) => m.name);
  const pending = (await migrator.getPending()).map((m) => m.name);
  if (pending.length > 0) {
    throw new TaskwireError(
      "INTERNAL",
      `the database schema is not current: ${pending.length} migration(s) pending (${pending.join(", ")}); ` +
        `start once without --no-migrate, or run \`taskwire migrate\``,
    );
  }
  return [];
}
