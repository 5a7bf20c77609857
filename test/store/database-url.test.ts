/**
 * Every part of --database-url applies to every connection. MikroORM alone reads only host, port,
 * user, password and database from a URL, so the pool used to drop what pg (and so the LISTEN
 * connection) honours: `?host=` naming a Unix socket folder, `sslmode`, `application_name`. A
 * `sslmode` that was dropped meant the task data went unencrypted to a server that was asked for TLS.
 */
import t from "tap";
import { startTestServer } from "../helpers/server.js";
import { createTestDatabaseUrl } from "../helpers/database.js";
import { startPrivatePostgres } from "../helpers/private-postgres.js";
import { jsonAny } from "../helpers/payload.js";
import { openDatabase } from "../../src/store/orm.js";

/** `url` with these query parameters set (a URL from TASKWIRE_TEST_DATABASE_URL may have some). */
function withParams(url: string, params: Record<string, string>): string {
  const parsed = new URL(url);
  for (const [name, value] of Object.entries(params)) parsed.searchParams.set(name, value);
  return parsed.toString();
}

t.test("application_name reaches the pool's connections", async (t) => {
  const url = withParams(await createTestDatabaseUrl(t), { application_name: "taskwire-url-test" });
  const database = await openDatabase(url);
  t.teardown(() => database.close());
  const [row] = await database.db.query<{ name: string }>("SELECT application_name AS name FROM pg_stat_activity WHERE pid = pg_backend_pid()");
  t.equal(row?.name, "taskwire-url-test");
});

t.test("sslmode is honoured: the pool's connection is encrypted or refused, never in clear", async (t) => {
  const url = withParams(await createTestDatabaseUrl(t), { sslmode: "verify-full" });
  const database = await openDatabase(url);
  t.teardown(() => database.close());
  const outcome = await database.db.query<{ ssl: boolean }>("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").then(
    ([row]) => (row?.ssl === true ? "encrypted" : "in clear"),
    (error: unknown) => `refused: ${String(error)}`,
  );
  // The test servers have no TLS (refused); a server with TLS and a certificate this machine trusts would encrypt.
  t.match(outcome, /^(encrypted|refused: .*(SSL|certificate|self.signed))/i, outcome);
});

t.test("?host= names a Unix socket folder: the pool and LISTEN both connect through it", async (t) => {
  const pg = await startPrivatePostgres(t, { unixSocket: true });
  // The host part cannot be resolved: a connection over TCP would fail.
  const url = `postgresql://postgres@no-such-host.invalid/taskwire?host=${encodeURIComponent(pg.socketDir!)}&port=${new URL(pg.url).port}`;
  const s = await startTestServer(t, { databaseUrl: url });
  await s.server.engine.listener.ready;
  await s.jobTypes.registerJobType({ name: "url.job" });
  const { task } = await s.tasks.submit({ task: { jobType: "url.job", input: jsonAny(1) } });
  t.ok(task?.id, "a task was submitted (through the pool)");
  const connections = await s.server.engine.database.db.query<{ addr: string | null; query: string }>(
    "SELECT client_addr::text AS addr, query FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'",
  );
  t.ok(connections.some((c) => /^LISTEN /i.test(c.query)), "the LISTEN connection is among them");
  t.same(connections.filter((c) => c.addr !== null), [], "every connection is on the Unix socket (no client address)");
});

t.test("a URL that cannot be parsed is refused saying how to name a socket, without repeating the URL", async (t) => {
  const error = await openDatabase("postgresql://postgres:secret-pw@/taskwire?host=/var/run/postgresql").then(() => undefined, (e: unknown) => e as Error);
  t.match(error?.message, /^the database URL is not a valid URL; for a Unix socket, name a host and give the socket folder as \?host=/);
  t.notMatch(error?.message, /secret-pw/, "the password is not in the message");
});
