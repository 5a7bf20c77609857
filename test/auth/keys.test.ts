/**
 * API keys over their life: created by RPC (operator and namespace admin), listed without secrets,
 * used (last use recorded, coalesced), expired, and revoked — on every replica: at once through the
 * notification, within the cache time without one, and ending the key's open streams. Development
 * mode ends for good with the first key, whatever happens to it later. Audit: who created and
 * revoked keys and namespaces (on the rows and in the audit log), and which key cancelled or
 * retried a task.
 */
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import t from "tap";
import { AuditAction, Role } from "../../src/gen/taskwire/v1/admin_pb.js";
import { TaskEventKind, TaskState } from "../../src/gen/taskwire/v1/task_pb.js";
import { jsonAny } from "../helpers/payload.js";
import { rejection } from "../helpers/rejection.js";
import { revokeApiKey } from "../../src/auth/key-admin.js";
import { CLI_ACTOR } from "../../src/core/api-key.js";
import { clientsFor, createTestKey, startTestServer, type TestServer } from "../helpers/server.js";

// Two replicas on one database; B trusts a cached key for a minute, so only the notification can
// make it notice a revocation quickly.
const a = await startTestServer(t, { keyCacheMs: 60_000 });
const b = await startTestServer(t, { databaseUrl: a.databaseUrl, keyCacheMs: 60_000 });
const db = a.server.engine.database.db;
const operator = await createTestKey(a.server.engine.database, "default", ["admin"]);
const opA = clientsFor(a.url, operator.token);

/** Polls `check` every 50 ms for up to `ms`; resolves with its last answer. */
async function eventually<T>(check: () => Promise<T>, done: (value: T) => boolean, ms = 5_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const codeOf = (call: () => Promise<unknown>) => call().then(() => "OK", (error: unknown) => Code[ConnectError.from(error).code]);

t.test("an operator creates a namespace and its first admin key; that admin manages only its own keys", async (t) => {
  const { namespace } = await opA.admin.createNamespace({ name: "acme" });
  t.match(namespace, { name: "acme", createdBy: operator.id }, "the creator is recorded");
  t.equal(Code[(await rejection(() => opA.admin.createNamespace({ name: "acme" }))).code], "AlreadyExists");
  t.equal(Code[(await rejection(() => opA.admin.createNamespace({ name: "Not Valid" }))).code], "InvalidArgument");
  const listed = (await opA.admin.listNamespaces({})).namespaces.map((n) => n.name);
  t.same(listed, ["acme", "default"]);

  const created = await opA.admin.createApiKey({ namespace: "acme", roles: [Role.ADMIN], description: "acme's first admin" });
  t.match(created.token, /^tw_[0-9a-f]{16}_/);
  t.match(created.key, { namespace: "acme", roles: [Role.ADMIN], createdBy: operator.id, description: "acme's first admin" });
  const acmeAdmin = clientsFor(a.url, created.token);
  const producer = await acmeAdmin.admin.createApiKey({ roles: [Role.PRODUCER, Role.WATCHER], expiresIn: durationFromMs(3_600_000) });
  t.equal(producer.key?.namespace, "acme", "an admin's key lands in its own namespace");
  t.equal(producer.key?.createdBy, created.key?.id);
  t.ok(producer.key?.expiresAt !== undefined, "with its expiry");
  const keys = (await acmeAdmin.admin.listApiKeys({})).keys;
  t.same(keys.map((k) => k.id).sort(), [created.key!.id, producer.key!.id].sort(), "listed: acme's keys only");
  t.notOk(JSON.stringify(keys, (_, v: unknown) => (typeof v === "bigint" ? v.toString() : v)).includes(created.token.slice(20)), "never a secret");
  const [row] = await db.query<{ secret_hash: Buffer }>("SELECT secret_hash FROM api_key WHERE id = $1", [created.key!.id]);
  t.equal(row!.secret_hash.length, 32, "only a 32-byte hash is stored");
  t.notOk(row!.secret_hash.toString("latin1").includes(created.token.slice(20)), "not the secret itself");
  t.equal(Code[(await rejection(() => acmeAdmin.admin.createApiKey({ namespace: "default", roles: [Role.ADMIN] }))).code], "PermissionDenied", "no keys for another namespace");
  t.equal(Code[(await rejection(() => acmeAdmin.admin.createApiKey({ roles: [] }))).code], "InvalidArgument", "at least one role");
  t.equal(Code[(await rejection(() => acmeAdmin.admin.createApiKey({ roles: [Role.UNSPECIFIED] }))).code], "InvalidArgument");
  t.equal(Code[(await rejection(() => acmeAdmin.admin.createApiKey({ roles: [Role.ADMIN], expiresIn: durationFromMs(10) }))).code], "InvalidArgument", "expiry bounds");
  t.equal(Code[(await rejection(() => opA.admin.createApiKey({ namespace: "nowhere", roles: [Role.ADMIN] }))).code], "NotFound", "an operator's key needs an existing namespace");
});

t.test("an expired key is refused, saying when it expired", async (t) => {
  const { token } = await opA.admin.createApiKey({ roles: [Role.WATCHER], expiresIn: durationFromMs(1_500) });
  const c = clientsFor(a.url, token);
  t.equal(await codeOf(() => c.tasks.listTasks({})), "OK", "works before it expires");
  const stream = (async () => {
    try {
      for await (const m of c.tasks.streamStatus({})) void m;
      return "ended";
    } catch (error) {
      return ConnectError.from(error).rawMessage;
    }
  })();
  await new Promise((resolve) => setTimeout(resolve, 1_600));
  const error = await rejection(() => c.tasks.listTasks({}));
  t.equal(Code[error.code], "Unauthenticated");
  t.match(error.rawMessage, /API key [0-9a-f]{16} expired at /);
  t.match(await stream, /expired at/, "a stream opened with it ended when it expired");
});

t.test("a revoked key stops working on every replica at once, and its open streams end", async (t) => {
  const { key, token } = await opA.admin.createApiKey({ roles: [Role.PRODUCER] });
  const onA = clientsFor(a.url, token);
  const onB = clientsFor(b.url, token);
  t.equal(await codeOf(() => onA.tasks.listTasks({})), "OK");
  t.equal(await codeOf(() => onB.tasks.listTasks({})), "OK", "B has the key cached now (for up to a minute)");
  const streamOnB = (async () => {
    try {
      for await (const m of onB.tasks.streamStatus({})) void m;
      return "ended";
    } catch (error) {
      return ConnectError.from(error).rawMessage;
    }
  })();
  t.equal(await eventually(async () => b.server.rpc.streams.openCount(key!.id), (n) => n === 1), 1, "the stream is open on B");
  const { key: revoked } = await opA.admin.revokeApiKey({ id: key!.id });
  t.equal(revoked?.revokedBy, operator.id, "who revoked it is recorded");
  t.equal(await codeOf(() => onA.tasks.listTasks({})), "Unauthenticated", "refused on A at once");
  t.equal(await eventually(() => codeOf(() => onB.tasks.listTasks({})), (c) => c === "Unauthenticated"), "Unauthenticated", "refused on B well before its cache time");
  t.match(await streamOnB, /API key [0-9a-f]{16} was revoked/, "B ended the key's stream");
  const error = await rejection(() => onB.tasks.listTasks({}));
  t.match(error.rawMessage, /was revoked at/);
  t.equal(Code[(await rejection(() => opA.admin.revokeApiKey({ id: "0123456789abcdef" }))).code], "NotFound");
  t.equal(Code[(await rejection(() => opA.admin.revokeApiKey({ id: "nope" }))).code], "InvalidArgument");
});

t.test("without the notification, a revocation takes effect within the cache time", async (t) => {
  // 3 s: the trigger and the update below must both fit inside the cache time, also on a loaded machine.
  const c = await startTestServer(t, { databaseUrl: a.databaseUrl, keyCacheMs: 3_000 });
  await c.server.engine.listener.ready;
  const noticed = new Promise<string>((resolve) => c.server.engine.auth.on("key:changed", resolve));
  const { id, token } = await createTestKey(a.server.engine.database, "default", ["watcher"]);
  t.equal(await noticed, id, "the new key's notification has reached C");
  const client = clientsFor(c.url, token);
  t.equal(await codeOf(() => client.tasks.listTasks({})), "OK");
  await db.query("ALTER TABLE api_key DISABLE TRIGGER api_key_notify");
  t.teardown(() => db.query("ALTER TABLE api_key ENABLE TRIGGER api_key_notify"));
  await db.query("UPDATE api_key SET revoked_at = now(), revoked_by = 'cli' WHERE id = $1", [id]);
  const revokedAt = Date.now();
  t.equal(await codeOf(() => client.tasks.listTasks({})), "OK", "still trusted from the cache (no notification came)");
  const code = await eventually(() => codeOf(() => client.tasks.listTasks({})), (x) => x === "Unauthenticated", 6_000);
  t.equal(code, "Unauthenticated", "refused once the cached entry is older than --key-cache-ms");
  t.ok(Date.now() - revokedAt < 6_000, "within the cache time plus one poll");
});

t.test("last use is recorded in memory and written coalesced, not per request", async (t) => {
  const { id, token } = await createTestKey(a.server.engine.database, "default", ["watcher"]);
  const client = clientsFor(a.url, token);
  for (let i = 0; i < 20; i++) await client.tasks.listTasks({});
  const read = async () => {
    const at = (await db.query<{ last_used_at: Date | string | null }>("SELECT last_used_at FROM api_key WHERE id = $1", [id]))[0]!.last_used_at;
    return at === null ? null : new Date(at);
  };
  t.equal(await read(), null, "20 requests wrote nothing yet (the flush runs once a minute)");
  await a.server.engine.auth.flushUsage();
  const used = await read();
  t.ok(used !== null && Date.now() - used.getTime() < 60_000, "one flush wrote it");
  const listed = (await opA.admin.listApiKeys({})).keys.find((k) => k.id === id);
  t.ok(listed?.lastUsedAt !== undefined, "ListApiKeys shows it");
});

t.test("cancel and retry record the key that did them on the task's events", async (t) => {
  const { key, token } = await opA.admin.createApiKey({ roles: [Role.PRODUCER, Role.WORKER] });
  const c = clientsFor(a.url, token);
  await c.jobTypes.registerJobType({ name: "audited" });
  const { task } = await c.tasks.submit({ task: { jobType: "audited", input: jsonAny(1) } });
  await c.tasks.cancel({ id: task!.id, reason: "not needed" });
  await c.tasks.retry({ id: task!.id, additionalAttempts: 1 });
  const events: { kind: TaskEventKind; state: TaskState; actor: string }[] = [];
  for await (const m of c.tasks.streamStatus({ taskIds: [task!.id], since: 0n })) {
    if (m.message.case === "event") events.push(m.message.value);
    if (m.message.case === "keepalive" || events.length === 3) break;
  }
  t.same(
    events.map((e) => [TaskEventKind[e.kind], TaskState[e.state], e.actor]),
    [
      ["CREATED", "PENDING", ""],
      ["STATE_CHANGED", "CANCELLED", key!.id],
      ["STATE_CHANGED", "PENDING", key!.id],
    ],
  );
  const claimed = (await c.workers.claimTasks({ workerId: "w", jobTypes: ["audited"], maxTasks: 1 })).assignments[0]!;
  await c.workers.completeTask({ completion: { taskId: claimed.taskId, attempt: claimed.attempt, leaseToken: claimed.leaseToken, output: jsonAny(2) } });
  const [row] = await db.query<{ actors: (string | null)[] }>("SELECT array_agg(actor ORDER BY seq) AS actors FROM task_event WHERE task_id = $1", [task!.id]);
  t.same(row!.actors, [null, key!.id, key!.id, null, null], "a worker's claim and report carry no actor (the setting is transaction-local)");
});

t.test("the audit log: one entry per namespace or key operation, naming who did it; an admin reads only its own namespace's", async (t) => {
  const entriesOf = (events: { action: AuditAction; namespace: string; target: string; actor: string }[]) => events.map((e) => [AuditAction[e.action], e.namespace, e.target, e.actor]);
  await opA.admin.createNamespace({ name: "ledger" });
  const admin = await opA.admin.createApiKey({ namespace: "ledger", roles: [Role.ADMIN] });
  const ledgerAdmin = clientsFor(a.url, admin.token);
  const worker = await ledgerAdmin.admin.createApiKey({ roles: [Role.WORKER] });
  // Five revokes at once (and on both replicas): one revocation, so one entry.
  const revokes = await Promise.allSettled([a, b, a, b, a].map((s) => clientsFor(s.url, admin.token).admin.revokeApiKey({ id: worker.key!.id })));
  t.same(revokes.map((r) => r.status), ["fulfilled", "fulfilled", "fulfilled", "fulfilled", "fulfilled"], "every revoke answers with the revoked key");
  // Refused operations record nothing.
  await rejection(() => opA.admin.createNamespace({ name: "ledger" }));
  await rejection(() => ledgerAdmin.admin.revokeApiKey({ id: operator.id }));
  await rejection(() => ledgerAdmin.admin.createApiKey({ roles: [] }));

  const expected = [
    ["API_KEY_REVOKED", "ledger", worker.key!.id, admin.key!.id],
    ["API_KEY_CREATED", "ledger", worker.key!.id, admin.key!.id],
    ["API_KEY_CREATED", "ledger", admin.key!.id, operator.id],
    ["NAMESPACE_CREATED", "ledger", "ledger", operator.id],
  ];
  const own = (await ledgerAdmin.admin.listAuditEvents({})).events;
  t.same(entriesOf(own), expected, "ledger's admin sees its namespace's entries, newest first, each naming its actor");
  t.ok(own.every((e) => e.at !== undefined && /^[1-9][0-9]*$/.test(e.id)), "with their time and id");
  t.same(entriesOf((await ledgerAdmin.admin.listAuditEvents({ namespace: "ledger" })).events), expected, "naming its own namespace is the same");
  const [row] = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_event WHERE namespace = 'ledger'");
  t.equal(row!.n, 4, "exactly one row per operation that happened");

  const paged: string[][] = [];
  for (let token = "", first = true; first || token !== ""; first = false) {
    const page = await ledgerAdmin.admin.listAuditEvents({ pageSize: 1, pageToken: token });
    paged.push(...(entriesOf(page.events) as string[][]));
    token = page.nextPageToken;
  }
  t.same(paged, expected, "pages of one entry give the same log");
  t.equal(Code[(await rejection(() => ledgerAdmin.admin.listAuditEvents({ pageSize: 100_000 }))).code], "InvalidArgument", "page sizes are bounded");

  t.equal(Code[(await rejection(() => ledgerAdmin.admin.listAuditEvents({ namespace: "default" }))).code], "PermissionDenied", "another namespace's log needs an operator");
  const other = clientsFor(a.url, (await opA.admin.createApiKey({ namespace: "acme", roles: [Role.ADMIN] })).token);
  t.equal(Code[(await rejection(() => other.admin.listAuditEvents({ namespace: "ledger" }))).code], "PermissionDenied", "acme's admin cannot read ledger's log");
  t.notOk((await other.admin.listAuditEvents({ pageSize: 1_000 })).events.some((e) => e.namespace !== "acme"), "and sees only acme's entries");
  t.same(entriesOf((await opA.admin.listAuditEvents({ namespace: "ledger" })).events), expected, "the operator reads ledger's log");
  const all = (await opA.admin.listAuditEvents({ pageSize: 1_000 })).events;
  t.same([...new Set(all.map((e) => e.namespace))].sort(), ["acme", "default", "ledger"], "and, with no namespace named, every namespace's");
  const watcher = clientsFor(a.url, (await opA.admin.createApiKey({ roles: [Role.PRODUCER, Role.WATCHER, Role.WORKER] })).token);
  t.equal(Code[(await rejection(() => watcher.admin.listAuditEvents({}))).code], "PermissionDenied", "only admins read the log");

  // The taskwire command (key-admin on the database) is audited the same way, as "cli".
  await revokeApiKey(a.server.engine.database.pool, { id: admin.key!.id, namespace: null, actor: CLI_ACTOR });
  t.same(entriesOf((await opA.admin.listAuditEvents({ namespace: "ledger", pageSize: 1 })).events), [["API_KEY_REVOKED", "ledger", admin.key!.id, "cli"]]);
});

t.test("development mode never comes back: with every key revoked, requests without a key stay UNAUTHENTICATED on every replica", async (t) => {
  // A database of its own, with no key yet: both replicas start in development mode.
  const d1 = await startTestServer(t);
  const d2 = await startTestServer(t, { databaseUrl: d1.databaseUrl });
  await d2.server.engine.listener.ready;
  const anonymous = [clientsFor(d1.url, undefined), clientsFor(d2.url, undefined)];
  for (const c of anonymous) t.equal(await codeOf(() => c.tasks.listTasks({})), "OK", "development mode while no key exists");
  await anonymous[0]!.admin.createNamespace({ name: "dev-made" });
  const [audited] = (await anonymous[1]!.admin.listAuditEvents({})).events;
  t.match(audited, { action: AuditAction.NAMESPACE_CREATED, target: "dev-made", actor: "dev" }, "development mode's operations are audited as dev");
  const noticeOn = (s: TestServer, id?: string) =>
    new Promise<void>((resolve) => {
      const listener = (changed: string) => {
        if (id !== undefined && changed !== id) return;
        s.server.engine.auth.off("key:changed", listener);
        resolve();
      };
      s.server.engine.auth.on("key:changed", listener);
    });

  // Written on the database directly (as the CLI does): each replica learns of it by notification.
  const created = Promise.all([noticeOn(d1), noticeOn(d2)]);
  const { id } = await createTestKey(d1.server.engine.database, "default", ["admin"]);
  await created;
  for (const c of anonymous) t.equal(await codeOf(() => c.tasks.listTasks({})), "Unauthenticated", "a key exists: keys are required");

  const backToDev: string[] = [];
  d1.server.engine.auth.on("dev-mode", (on) => on && backToDev.push("replica 1"));
  d2.server.engine.auth.on("dev-mode", (on) => on && backToDev.push("replica 2"));
  const revoked = noticeOn(d2, id);
  await revokeApiKey(d1.server.engine.database.pool, { id, namespace: null, actor: CLI_ACTOR }); // what `taskwire keys revoke` does
  await revoked;
  // Lost notifications make a replica read the table again: it must still find the revoked key.
  d1.server.engine.auth.onResync();
  d2.server.engine.auth.onResync();
  await new Promise((resolve) => setTimeout(resolve, 300)); // room for a re-read to (wrongly) reopen the server
  for (const [i, c] of anonymous.entries()) {
    const error = await rejection(() => c.tasks.listTasks({}));
    t.equal(Code[error.code], "Unauthenticated", `replica ${i + 1}: still UNAUTHENTICATED after the revocation's notification`);
    t.match(error.rawMessage, /requires an API key/);
  }
  t.same(backToDev, [], "no replica went back to development mode");

  // A replica started now reads the table afresh: the revoked key counts.
  const d3 = await startTestServer(t, { databaseUrl: d1.databaseUrl });
  t.equal(d3.server.engine.auth.devMode, false, "a fresh replica does not start in development mode");
  t.equal(await codeOf(() => clientsFor(d3.url, undefined).tasks.listTasks({})), "Unauthenticated");
  // The way back in: an operator mints a new key on the database.
  const fresh = await createTestKey(d1.server.engine.database, "default", ["producer"]);
  t.equal(await codeOf(() => clientsFor(d3.url, fresh.token).tasks.listTasks({})), "OK", "a new key works");
});
