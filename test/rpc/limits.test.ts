/**
 * Each configurable limit, on a server configured with small ones: exceeding it answers
 * RESOURCE_EXHAUSTED or INVALID_ARGUMENT naming the limit, writes nothing, and the server goes on.
 */
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import type { ClientSessionOptions } from "node:http2";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient as createRpcClient } from "@connectrpc/connect";
import { compressionGzip, createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "../../src/gen/grpc/health/v1/health_pb.js";
import { TaskService } from "../../src/gen/taskwire/v1/task_pb.js";
import { ClaimRequestSchema, WorkerService, type ClaimRequest } from "../../src/gen/taskwire/v1/worker_pb.js";
import { MessageQueue } from "../../src/server/message-queue.js";
import t from "tap";
import { createClient } from "../../src/sdk/index.js";
import { jsonAny } from "../helpers/payload.js";
import { rejection } from "../helpers/rejection.js";
import { bearer, clientsFor, createTestKey, startTestServer } from "../helpers/server.js";

const s = await startTestServer(t, {
  limits: {
    maxMessageBytes: 128 * 1024,
    maxPayloadBytes: 64 * 1024,
    maxStreamsPerKey: 2,
    submitRatePerSec: 5,
    submitBurst: 5,
    maxPageSize: 10,
    defaultPageSize: 3,
    maxWaitMs: 1_000,
    maxStreamMs: 1_000,
  },
});
const db = s.server.engine.database.db;
const key = await createTestKey(s.server.engine.database, "default", ["producer", "worker"]);
const c = clientsFor(s.url, key.token);
await c.jobTypes.registerJobType({ name: "small", maxPayloadBytes: 1_000 });
await c.jobTypes.registerJobType({ name: "big" });

const taskCount = async () => Number((await db.query<{ n: string }>("SELECT count(*)::text AS n FROM task"))[0]!.n);
/** A JSON string payload of about `bytes` encoded bytes. */
const payloadOf = (bytes: number) => jsonAny("x".repeat(bytes - 3));

t.test("max message size: a larger request is refused before it is decoded, naming --max-message-bytes, in every protocol", async (t) => {
  const before = await taskCount();
  const huge = "x".repeat(200 * 1024);
  const flag = /^the request message(, decompressed,)? (\(\d+ bytes\) )?is larger than this server accepts \(--max-message-bytes 131072 bytes\); send a smaller message, or fewer tasks per call$/;
  const transports = {
    "Connect JSON (HTTP/1.1)": createConnectTransport({ baseUrl: s.url, httpVersion: "1.1", useBinaryFormat: false, interceptors: [bearer(key.token)] }),
    "Connect binary (HTTP/2)": createConnectTransport({ baseUrl: s.url, httpVersion: "2", interceptors: [bearer(key.token)] }),
    gRPC: createGrpcTransport({ baseUrl: s.url, interceptors: [bearer(key.token)] }),
    "gRPC, gzip": createGrpcTransport({ baseUrl: s.url, interceptors: [bearer(key.token)], sendCompression: compressionGzip, compressMinBytes: 0 }),
    "gRPC-Web (HTTP/1.1)": createGrpcWebTransport({ baseUrl: s.url, httpVersion: "1.1", interceptors: [bearer(key.token)] }),
    "gRPC-Web (HTTP/2)": createGrpcWebTransport({ baseUrl: s.url, httpVersion: "2", interceptors: [bearer(key.token)] }),
  };
  for (const [name, transport] of Object.entries(transports)) {
    const tasks = createRpcClient(TaskService, transport);
    const workers = createRpcClient(WorkerService, transport);
    const calls: [string, () => Promise<unknown>][] = [
      ["unary GetTask", () => tasks.getTask({ id: huge })],
      ["server-streaming StreamStatus", async () => {
        for await (const m of tasks.streamStatus({ jobTypes: [huge] })) void m;
      }],
    ];
    // A bidirectional stream needs HTTP/2.
    if (!name.includes("HTTP/1.1")) {
      calls.push(["bidirectional Claim", async () => {
        const requests = new MessageQueue<ClaimRequest>();
        requests.push(create(ClaimRequestSchema, { message: { case: "hello", value: { workerId: huge, jobTypes: ["big"], credits: 1 } } }));
        try {
          for await (const m of workers.claim(requests)) void m;
        } finally {
          requests.end();
        }
      }]);
    }
    for (const [kind, call] of calls) {
      const error = await rejection(call);
      t.equal(Code[error.code], "ResourceExhausted", `${name}, ${kind}: RESOURCE_EXHAUSTED`);
      t.match(error.rawMessage, flag, `${name}, ${kind}: the message names the flag and its value (${error.rawMessage})`);
      if (name.includes("gzip")) t.match(error.rawMessage, /decompressed/, "the gzip body is judged by its decompressed size");
    }
  }
  t.equal(await taskCount(), before, "nothing written");
});

t.test("max payload: the server's, and a job type's lower one", async (t) => {
  const before = await taskCount();
  const server = await rejection(() => c.tasks.submit({ task: { jobType: "big", input: payloadOf(80 * 1024) } }));
  t.equal(Code[server.code], "ResourceExhausted");
  t.match(server.rawMessage, /task\.input: is \d+ bytes; the limit is 65536 bytes \(the server's --max-payload-bytes\)/);
  const small = await rejection(() => c.tasks.submit({ task: { jobType: "small", input: payloadOf(2_000) } }));
  t.match(small.rawMessage, /the limit is 1000 bytes \(job type "small"'s max_payload_bytes\)/);
  t.equal(await taskCount(), before, "nothing written");
  t.ok((await c.tasks.submit({ task: { jobType: "small", input: payloadOf(900) } })).task, "within the limit");
  t.equal((await c.jobTypes.getJobType({ name: "small" })).jobType?.maxPayloadBytes, 1_000);
  t.equal((await c.jobTypes.getJobType({ name: "big" })).jobType?.maxPayloadBytes, 65_536, "unset: the server's");
  const over = await rejection(() => c.jobTypes.registerJobType({ name: "huge", maxPayloadBytes: 100_000 }));
  t.equal(Code[over.code], "InvalidArgument");
  t.match(over.rawMessage, /max_payload_bytes: is 100000; allowed: 1 to 65536 bytes \(the server's --max-payload-bytes\)/);
  // Outputs are held to the same limit.
  const [a] = (await c.workers.claimTasks({ workerId: "w", jobTypes: ["small"], maxTasks: 1 })).assignments;
  const out = await rejection(() => c.workers.completeTask({ completion: { taskId: a!.taskId, attempt: a!.attempt, leaseToken: a!.leaseToken, output: payloadOf(2_000) } }));
  t.match(out.rawMessage, /completion\.output: is \d+ bytes; the limit is 1000 bytes/);
  t.match(out.rawMessage, /; the attempt was recorded as failed$/);
  t.equal((await c.tasks.getTask({ id: a!.taskId })).task?.attempts[0]?.outcome, 3 /* FAILED */, "its attempt failed: an output over the limit can never succeed");
});

t.test("submit rate per key: a token bucket", async (t) => {
  await new Promise((resolve) => setTimeout(resolve, 1_100)); // the bucket refills (5/s) after the test above
  const before = await taskCount();
  const batch = await rejection(() => c.tasks.submitBatch({ tasks: Array.from({ length: 6 }, () => ({ jobType: "big", input: jsonAny(1) })) }));
  t.equal(Code[batch.code], "ResourceExhausted");
  t.match(batch.rawMessage, /6 tasks at once is more than the burst API key [0-9a-f]{16} may submit \(--submit-rate 5 tasks\/s, --submit-burst 5\)/);
  // The burst in one call, so the sixth follows within one round trip: five calls one after the
  // other could take longer than the 200 ms that refill a token on a loaded machine.
  t.equal((await c.tasks.submitBatch({ tasks: Array.from({ length: 5 }, (_, i) => ({ jobType: "big", input: jsonAny(i) })) })).tasks.length, 5, "a batch of the burst is accepted");
  const sixth = await rejection(() => c.tasks.submit({ task: { jobType: "big", input: jsonAny(6) } }));
  t.equal(Code[sixth.code], "ResourceExhausted");
  t.match(sixth.rawMessage, /submit rate limit of API key [0-9a-f]{16} reached \(--submit-rate 5 tasks\/s, --submit-burst 5\); retry in \d+ ms/);
  t.equal(await taskCount(), before + 5, "only the accepted five were written");
  const other = await createTestKey(s.server.engine.database, "default", ["producer"]);
  t.ok((await clientsFor(s.url, other.token).tasks.submit({ task: { jobType: "big", input: jsonAny(7) } })).task, "another key has its own bucket");
});

t.test("page sizes: the cap, and the default for 0", async (t) => {
  const error = await rejection(() => c.tasks.listTasks({ pageSize: 11 }));
  t.equal(Code[error.code], "InvalidArgument");
  t.match(error.rawMessage, /page_size: is 11; allowed: 1 to 10 \(the server's --max-page-size\), or 0 for 3/);
  const page = await c.tasks.listTasks({});
  t.equal(page.tasks.length, 3, "0 means --default-page-size");
  t.ok(page.nextPageToken !== "");
  const full = await c.tasks.listTasks({ pageSize: 10 });
  t.equal(full.tasks.length, Math.min(10, Number(full.totalCount)), "up to the cap");
});

t.test("StreamStatus: task_ids and the snapshot are bounded by --max-page-size too", async (t) => {
  // Enough unfinished tasks for more than a page (each key has its own burst of 5).
  const more = clientsFor(s.url, (await createTestKey(s.server.engine.database, "default", ["producer"])).token);
  await more.tasks.submitBatch({ tasks: [1, 2, 3, 4, 5].map((i) => ({ jobType: "big", input: jsonAny(i) })) });
  const [row] = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM task WHERE state IN ('waiting', 'pending', 'running')");
  t.ok(row!.n > 10, `${row!.n} unfinished tasks`);
  const ids = Array.from({ length: 11 }, (_, i) => String(i + 1));
  const error = await rejection(async () => {
    for await (const m of c.tasks.streamStatus({ taskIds: ids })) void m;
  });
  t.equal(Code[error.code], "InvalidArgument");
  t.match(error.rawMessage, /task_ids: has 11 ids; the limit is 10 \(the server's --max-page-size\)/);
  // The stream ends by itself after --max-stream-ms (1 s): everything it sent is counted.
  let snapshots = 0;
  const ended = await rejection(async () => {
    for await (const m of c.tasks.streamStatus({})) if (m.message.case === "snapshot") snapshots++;
  });
  t.equal(Code[ended.code], "Unavailable");
  t.equal(snapshots, 10, "a snapshot of the oldest 10 unfinished tasks, a page");
  let named = 0;
  await rejection(async () => {
    for await (const m of c.tasks.streamStatus({ taskIds: ids.slice(0, 10) })) if (m.message.case === "snapshot") named++;
  });
  t.ok(named > 0 && named <= 10, `10 named ids are allowed (${named} of them exist)`);
});

t.test("wait duration: longer waits are refused; the SDK waits in calls the server allows", async (t) => {
  const { task } = await c.tasks.submit({ task: { jobType: "small", input: jsonAny(1) } }).catch(async () => {
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    return c.tasks.submit({ task: { jobType: "small", input: jsonAny(1) } });
  });
  const error = await rejection(() => c.tasks.waitTask({ id: task!.id, timeout: durationFromMs(2_000) }));
  t.equal(Code[error.code], "InvalidArgument");
  t.match(error.rawMessage, /timeout: is 2000 ms; the server allows waits of up to 1000 ms \(--max-wait-ms\)/);
  const submitWait = await rejection(() => c.tasks.submit({ task: { jobType: "small", input: jsonAny(2) }, waitTimeout: durationFromMs(5_000) }));
  t.match(submitWait.rawMessage, /wait_timeout: is 5000 ms; the server allows waits of up to 1000 ms/);
  const sdk = createClient({ baseUrl: s.url, apiKey: key.token });
  t.teardown(() => sdk.close());
  const started = Date.now();
  const waited = await rejection(() => sdk.handle(task!.id).wait({ timeoutMs: 2_500 }));
  t.equal(Code[waited.code], "DeadlineExceeded", "the SDK's 2.5 s wait ran as calls of at most 1 s, then timed out");
  t.ok(Date.now() - started >= 2_400, "it waited the whole 2.5 s");
});

t.test("open streams per key, counted per replica", async (t) => {
  const streams = [new AbortController(), new AbortController()];
  const opened = streams.map((abort) => {
    const it = c.tasks.streamStatus({}, { signal: abort.signal })[Symbol.asyncIterator]();
    return it.next().then(() => it);
  });
  await Promise.all(opened);
  t.equal(s.server.rpc.streams.openCount(key.id), 2);
  const third = await (async () => {
    try {
      for await (const m of c.tasks.streamStatus({})) void m;
      return undefined;
    } catch (error) {
      return ConnectError.from(error);
    }
  })();
  t.equal(third === undefined ? undefined : Code[third.code], "ResourceExhausted");
  t.match(third?.rawMessage ?? "", /API key [0-9a-f]{16} already has 2 open streams on this server, the limit \(--max-streams-per-key 2\)/);
  const worker = await rejection(async () => {
    for await (const m of c.workers.claim((async function* () {})())) void m;
    throw new Error("no error");
  });
  t.equal(Code[worker.code], "ResourceExhausted", "Claim streams count too");
  streams[0]!.abort();
  for (let i = 0; i < 100 && s.server.rpc.streams.openCount(key.id) > 1; i++) await new Promise((resolve) => setTimeout(resolve, 20));
  t.equal(s.server.rpc.streams.openCount(key.id), 1, "a closed stream frees its slot");
  streams[1]!.abort();
});

t.test("Health.Watch without a key: streams are counted per remote address, so one client cannot use up the others' allowance", async (t) => {
  // http2.connect passes net.connect's options on (localAddress: the loopback address to call from); its type does not list them.
  const from = (localAddress: string) => {
    const nodeOptions: ClientSessionOptions & { localAddress: string } = { localAddress };
    return createRpcClient(Health, createGrpcTransport({ baseUrl: s.url, nodeOptions }));
  };
  const abort = new AbortController();
  t.teardown(() => abort.abort());
  /** Opens a watch and waits for its first answer. */
  const watch = async (client: ReturnType<typeof from>) => {
    const first = await client.watch({ service: "" }, { signal: abort.signal })[Symbol.asyncIterator]().next();
    return first.value?.status;
  };
  const greedy = from("127.0.0.1");
  t.same(await Promise.all([watch(greedy), watch(greedy)]), [HealthCheckResponse_ServingStatus.SERVING, HealthCheckResponse_ServingStatus.SERVING]);
  t.equal(s.server.rpc.streams.openCount("anonymous:127.0.0.1"), 2);
  const third = await rejection(() => watch(greedy));
  t.equal(Code[third.code], "ResourceExhausted", "the address's own allowance (--max-streams-per-key 2) is used up");
  t.match(third.rawMessage, /^the address 127\.0\.0\.1 \(no key\) already has 2 open streams on this server, the limit \(--max-streams-per-key 2\)/);
  t.equal(await watch(from("127.0.0.2")), HealthCheckResponse_ServingStatus.SERVING, "a probe from another address still gets its watch");
  t.equal(s.server.rpc.streams.openCount("anonymous:127.0.0.2"), 1);
  // All callers without a key together: at most ANONYMOUS_STREAMS_FACTOR x 2 = 20 (3 are open).
  for (let i = 0; i < 17; i++) t.equal(await watch(from(`127.0.0.${3 + Math.floor(i / 2)}`)), HealthCheckResponse_ServingStatus.SERVING);
  const many = await rejection(() => watch(from("127.0.0.20")));
  t.equal(Code[many.code], "ResourceExhausted", "a new address past the bound for all anonymous streams is refused too");
  t.match(many.rawMessage, /^callers without an API key already have 20 open streams on this server, the limit for all of them together \(10 x --max-streams-per-key 2\)/);
  t.equal(s.server.rpc.streams.openCount("anonymous:127.0.0.20"), 0, "a refused stream leaves no count behind");
  abort.abort();
  for (let i = 0; i < 100 && s.server.rpc.streams.openCount("anonymous:127.0.0.1") > 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
  t.equal(s.server.rpc.streams.openCount("anonymous:127.0.0.1"), 0, "closed watches free their slots");
});

t.test("stream duration: a stream ends with UNAVAILABLE after --max-stream-ms, and resumes from its cursor", async (t) => {
  for (let i = 0; i < 100 && s.server.rpc.streams.openCount(key.id) > 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
  const started = Date.now();
  let cursor = 0n;
  const error = await rejection(async () => {
    for await (const m of c.tasks.streamStatus({ since: 0n })) cursor = m.cursor;
  });
  t.equal(Code[error.code], "Unavailable");
  t.match(error.rawMessage, /this stream reached its maximum duration \(--max-stream-ms 1000 ms\); reconnect to go on \(StreamStatus: with since = the last cursor received\)/);
  t.ok(Date.now() - started >= 900, "after about a second");
  t.ok(cursor > 0n, "it had replayed events first");
  // The SDK's events() reconnects from its cursor across such ends and sees the task finish.
  const sdk = createClient({ baseUrl: s.url, apiKey: key.token });
  t.teardown(() => sdk.close());
  const { task } = await c.tasks.submit({ task: { jobType: "small", input: jsonAny("late") } }).catch(async () => {
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    return c.tasks.submit({ task: { jobType: "small", input: jsonAny("late") } });
  });
  const states: number[] = [];
  const following = (async () => {
    for await (const event of sdk.handle(task!.id).events()) states.push(event.state);
  })();
  await new Promise((resolve) => setTimeout(resolve, 1_500)); // past one stream's maximum
  await c.tasks.cancel({ id: task!.id });
  await following;
  t.same(states, [2, 6], "PENDING, then CANCELLED, across a stream that ended");
});
