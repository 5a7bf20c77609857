/**
 * Per-test-file databases, cloned from the template that test/setup/before.ts migrated for this tap
 * run (`CREATE DATABASE ... TEMPLATE`: a few milliseconds, instead of migrating each time). Every
 * database is dropped in the test's teardown, so parallel files never see each other's rows.
 */
import { randomBytes } from "node:crypto";
import type { Test } from "tap";
import { type Database, openDatabase } from "../../src/store/orm.js";
import { TEST_DATABASE_PREFIX, dropDatabase, readTestEnv, withAdmin, withDatabase } from "../setup/test-postgres.js";

/** A migrated database of one test, and its URL (for LISTEN clients or a server process). */
export interface TestDatabase {
  url: string;
  database: Database;
}

let counter = 0;

/**
 * A database name unique across parallel test files and runs: the pid (which before.ts uses to drop
 * the leftovers of killed processes), a counter within this process, and a random suffix.
 */
function uniqueName(): string {
  counter += 1;
  return `${TEST_DATABASE_PREFIX}${process.pid}_${counter}_${randomBytes(3).toString("hex")}`;
}

/** Creates a database (a clone of `template`) and returns its URL and how to drop it. */
async function createDatabase(template: "migrated" | "empty"): Promise<{ url: string; drop: () => Promise<void> }> {
  const env = await readTestEnv();
  const name = uniqueName();
  // template0 is always empty, whatever an external server put into template1.
  const source = template === "migrated" ? env.template : "template0";
  await withAdmin(env.adminUrl, (client) =>
    client.query(`CREATE DATABASE ${client.escapeIdentifier(name)} TEMPLATE ${client.escapeIdentifier(source)}`),
  );
  return { url: withDatabase(env.adminUrl, name), drop: () => dropDatabase(env.adminUrl, name) };
}

/**
 * A migrated database for this test, opened with `openDatabase`. The teardown closes it, then drops
 * the database.
 */
export async function createTestDatabase(t: Test): Promise<TestDatabase> {
  const { url, drop } = await createDatabase("migrated");
  let database: Database;
  try {
    database = await openDatabase(url);
  } catch (error) {
    await drop();
    throw error;
  }
  t.teardown(async () => {
    await database.close();
    await drop();
  });
  return { url, database };
}

/**
 * The URL of a migrated database for this test, not opened (for a server started as a separate
 * process). The teardown drops it, disconnecting anything still connected.
 */
export async function createTestDatabaseUrl(t: Test): Promise<string> {
  const { url, drop } = await createDatabase("migrated");
  t.teardown(drop);
  return url;
}

/** The URL of a database with no schema at all (for `--no-migrate` and first-start tests). */
export async function createEmptyDatabaseUrl(t: Test): Promise<string> {
  const { url, drop } = await createDatabase("empty");
  t.teardown(drop);
  return url;
}
