/**
 * The limit flags and the auth environment as `taskwire server start` takes them: one real server
 * process, started with small limits and TASKWIRE_REQUIRE_AUTH=1 on a database with no key, and
 * each setting checked over the wire; then `taskwire namespace list` and `taskwire keys list`
 * print what the CLI created.
 */
import { execFile } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Code, ConnectError } from "@connectrpc/connect";
import t from "tap";
import { runCli, startedUrl } from "../helpers/cli-server.js";
import { createTestDatabaseUrl } from "../helpers/database.js";
import { jsonAny } from "../helpers/payload.js";
import { rejection } from "../helpers/rejection.js";
import { clientsFor } from "../helpers/server.js";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const bin = path.join(repo, "bin/taskwire.js");
const databaseUrl = await createTestDatabaseUrl(t);
const environment = { ...process.env, TASKWIRE_DATABASE_URL: databaseUrl, TASKWIRE_REQUIRE_AUTH: undefined };

/** A `taskwire` command on the test database; its stdout. */
async function cli(...args: string[]): Promise<string> {
  return (await promisify(execFile)(process.execPath, [bin, ...args], { cwd: repo, env: environment })).stdout;
}

const LIMIT_FLAGS = [
  ["--max-page-size", "5"],
  ["--default-page-size", "2"],
  ["--submit-rate", "1"],
  ["--submit-burst", "2"],
  ["--max-message-bytes", "70000"],
  ["--max-payload-bytes", "4096"],
  ["--max-streams-per-key", "1"],
  ["--max-wait-ms", "1000"],
  ["--max-stream-ms", "1500"],
].flat();

// No key exists yet: on loopback, only TASKWIRE_REQUIRE_AUTH keeps the server from development mode.
const server = runCli(["server", "start", "--port", "0", "--inline-threads", "0", ...LIMIT_FLAGS], { env: { ...environment, TASKWIRE_REQUIRE_AUTH: "1" } });
const url = await startedUrl(t, server);

t.test("TASKWIRE_REQUIRE_AUTH=1: with no key created, a request without one is refused", async (t) => {
  const refused = await rejection(() => clientsFor(url, undefined).tasks.listTasks({}));
  t.equal(Code[refused.code], "Unauthenticated");
  t.match(refused.rawMessage, /this server requires an API key/);
  t.notMatch(server.output(), /development mode/, "no development mode");
});

let tokenId = "";
let spareId = "";
let c = clientsFor(url, undefined);

t.test("the CLI creates a namespace, a key to use, and a key it revokes (for keys list --all)", async (t) => {
  t.equal(await cli("namespace", "create", "acme"), "acme\n");
  const token = (await cli("keys", "create", "--namespace", "acme", "--role", "producer,worker,watcher", "--description", "in use")).trim();
  const spare = (await cli("keys", "create", "--namespace", "acme", "--role", "watcher", "--description", "spare")).trim();
  tokenId = /^tw_([0-9a-f]{16})_/.exec(token)?.[1] ?? "";
  spareId = /^tw_([0-9a-f]{16})_/.exec(spare)?.[1] ?? "";
  t.match(await cli("keys", "revoke", spareId), new RegExp(`^${spareId} revoked at `));
  c = clientsFor(url, token);
});

/** Runs `call` until it is no longer UNAUTHENTICATED (the new key's notification reaches the server within moments). */
async function eventually(call: () => Promise<unknown>): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await call();
      return;
    } catch (error) {
      if (i >= 100 || ConnectError.from(error).code !== Code.Unauthenticated) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

t.test("--max-page-size 5 and --default-page-size 2", async (t) => {
  await eventually(() => c.jobTypes.registerJobType({ name: "limits.a" }));
  for (const name of ["limits.b", "limits.c"]) await c.jobTypes.registerJobType({ name });
  const first = await c.jobTypes.listJobTypes({});
  t.equal(first.jobTypes.length, 2, "page_size 0 gives the default, 2");
  t.not(first.nextPageToken, "", "with a next page");
  t.equal((await c.jobTypes.listJobTypes({ pageSize: 5 })).jobTypes.length, 3, "5 is allowed");
  const over = await rejection(() => c.jobTypes.listJobTypes({ pageSize: 6 }));
  t.equal(Code[over.code], "InvalidArgument");
  t.match(over.rawMessage, /page_size: is 6; allowed: 1 to 5 \(the server's --max-page-size\), or 0 for 2/);
});

t.test("--submit-rate 1 and --submit-burst 2", async (t) => {
  const batch = await rejection(() => c.tasks.submitBatch({ tasks: [1, 2, 3].map((i) => ({ jobType: "limits.a", input: jsonAny(i) })) }));
  t.equal(Code[batch.code], "ResourceExhausted");
  t.match(batch.rawMessage, /3 tasks at once is more than the burst API key [0-9a-f]{16} may submit \(--submit-rate 1 tasks\/s, --submit-burst 2\)/);
  await c.tasks.submit({ task: { jobType: "limits.a", input: jsonAny(1) } });
  await c.tasks.submit({ task: { jobType: "limits.a", input: jsonAny(2) } });
  const third = await rejection(() => c.tasks.submit({ task: { jobType: "limits.a", input: jsonAny(3) } }));
  t.equal(Code[third.code], "ResourceExhausted", "the burst of 2 is used up");
  t.match(third.rawMessage, /--submit-rate 1 tasks\/s, --submit-burst 2\); retry in \d+ ms/);
});

t.test("--max-message-bytes 70000 and --max-payload-bytes 4096", async (t) => {
  const message = await rejection(() => c.tasks.getTask({ id: "9".repeat(80_000) }));
  t.equal(Code[message.code], "ResourceExhausted");
  t.match(message.rawMessage, /is larger than this server accepts \(--max-message-bytes 70000 bytes\)/);
  const payload = await rejection(() => c.jobTypes.registerJobType({ name: "limits.big", maxPayloadBytes: 5_000 }));
  t.equal(Code[payload.code], "InvalidArgument");
  t.match(payload.rawMessage, /allowed: 1 to 4096 bytes \(the server's --max-payload-bytes\)/);
});

t.test("--max-wait-ms 1000", async (t) => {
  const wait = await rejection(() => c.tasks.waitTask({ id: "1", timeout: { seconds: 2n, nanos: 0 } }));
  t.equal(Code[wait.code], "InvalidArgument");
  t.match(wait.rawMessage, /timeout: is 2000 ms; the server allows waits of up to 1000 ms \(--max-wait-ms\)/);
});

t.test("--max-streams-per-key 1 and --max-stream-ms 1500", async (t) => {
  const opened = Date.now();
  const first = c.tasks.streamStatus({ jobTypes: ["limits.a"] })[Symbol.asyncIterator]();
  t.equal((await first.next()).value?.message.case, "snapshot", "the first stream is open (it sent the tasks' snapshot)");
  const second = await rejection(async () => {
    for await (const m of c.tasks.streamStatus({})) void m;
  });
  t.equal(Code[second.code], "ResourceExhausted");
  t.match(second.rawMessage, /already has 1 open streams on this server, the limit \(--max-streams-per-key 1\)/);
  const ended = await rejection(async () => {
    for (;;) if ((await first.next()).done === true) return;
  });
  t.equal(Code[ended.code], "Unavailable");
  t.match(ended.rawMessage, /maximum duration \(--max-stream-ms 1500 ms\)/);
  t.ok(Date.now() - opened >= 1_400, `the stream ended after --max-stream-ms (${Date.now() - opened} ms)`);
});

t.test("taskwire namespace list and keys list print what exists", async (t) => {
  const [namespaces, all, active] = await Promise.all([cli("namespace", "list"), cli("keys", "list", "--all"), cli("keys", "list", "--namespace", "acme")]);
  t.match(namespaces, /^acme  created \S+ by cli\ndefault  created \S+\n$/, "acme (by the CLI) and the built-in default");
  const lines = all.trimEnd().split("\n");
  t.equal(lines.length, 2, `--all: both keys (${all})`);
  t.match(lines.find((line) => line.startsWith(tokenId)), new RegExp(`^${tokenId}  acme  producer,worker,watcher  active  created \\S+ by cli  expires never  last used .*  "in use"$`));
  t.match(lines.find((line) => line.startsWith(spareId)), new RegExp(`^${spareId}  acme  watcher  revoked \\S+ by cli  created \\S+ by cli  expires never  last used never  "spare"$`));
  t.equal(active.trimEnd().split("\n").length, 1, "without --all: only the usable key");
  t.ok(active.startsWith(tokenId));
  t.notMatch(all + active, /tw_[0-9a-f]{16}_/, "never a token");
});

t.test("the server stops cleanly", async (t) => {
  server.child.kill("SIGTERM");
  t.equal(await server.exit, 0);
  t.notMatch(server.output(), /"level":60/, "no fatal log");
});
