/**
 * The role matrix, written out here from the issue (not read from src/core/roles.ts, so a wrong
 * table fails): every procedure called with a key of each single role, and with admin. A role that
 * may not call it gets PERMISSION_DENIED naming the role it needs; one that may gets anything else
 * (most empty requests are INVALID_ARGUMENT). Requests with no key, a malformed header or a wrong
 * secret are UNAUTHENTICATED; health stays public.
 */
import { create, type DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import t from "tap";
import { Health } from "../../src/gen/grpc/health/v1/health_pb.js";
import { SERVICES } from "../../src/server/routes.js";
import { MessageQueue } from "../../src/server/message-queue.js";
import { clientsFor, createTestKey, startTestServer } from "../helpers/server.js";

const s = await startTestServer(t, { streamKeepaliveMs: 100 });
const db = s.server.engine.database.db;

const P = "producer";
const W = "worker";
const R = "watcher";
/** Who may call what, besides admin (which may call everything in its namespace). "op": operators only. */
const MATRIX: Record<string, string[] | "op"> = {
  "taskwire.v1.TaskService/Submit": [P],
  "taskwire.v1.TaskService/SubmitBatch": [P],
  "taskwire.v1.TaskService/GetTask": [P, R],
  "taskwire.v1.TaskService/ListTasks": [P, R],
  "taskwire.v1.TaskService/Cancel": [P],
  "taskwire.v1.TaskService/Retry": [P],
  "taskwire.v1.TaskService/WaitTask": [P],
  "taskwire.v1.TaskService/StreamStatus": [P, R],
  "taskwire.v1.JobTypeService/RegisterJobType": [W],
  "taskwire.v1.JobTypeService/GetJobType": [P, W, R],
  "taskwire.v1.JobTypeService/ListJobTypes": [P, W, R],
  "taskwire.v1.WorkerService/Claim": [W],
  "taskwire.v1.WorkerService/ClaimTasks": [W],
  "taskwire.v1.WorkerService/Heartbeat": [W],
  "taskwire.v1.WorkerService/ReportProgress": [W],
  "taskwire.v1.WorkerService/SaveCheckpoint": [W],
  "taskwire.v1.WorkerService/ReleaseTask": [W],
  "taskwire.v1.WorkerService/CompleteTask": [W],
  "taskwire.v1.WorkerService/FailTask": [W],
  "taskwire.v1.WorkerService/ListWorkers": [P, W, R],
  "taskwire.v1.ScheduleService/CreateSchedule": [P],
  "taskwire.v1.ScheduleService/GetSchedule": [P, R],
  "taskwire.v1.ScheduleService/ListSchedules": [P, R],
  "taskwire.v1.ScheduleService/PauseSchedule": [P],
  "taskwire.v1.ScheduleService/ResumeSchedule": [P],
  "taskwire.v1.ScheduleService/DeleteSchedule": [P],
  "taskwire.v1.AdminService/CreateNamespace": "op",
  "taskwire.v1.AdminService/ListNamespaces": "op",
  "taskwire.v1.AdminService/CreateApiKey": [],
  "taskwire.v1.AdminService/ListApiKeys": [],
  "taskwire.v1.AdminService/RevokeApiKey": [],
  "taskwire.v1.AdminService/ListAuditEvents": [],
};

const methods = SERVICES.filter((service) => service !== Health).flatMap((service) => service.methods.map((method: DescMethod) => ({ service, method, procedure: `${service.typeName}/${method.name}` })));

/** Calls a procedure with an empty request (an empty request stream for Claim) and returns the error, if any. */
async function call(token: string | undefined, service: (typeof SERVICES)[number], method: DescMethod): Promise<ConnectError | undefined> {
  const client = createClient(service, clientsFor(s.url, token).transport) as unknown as Record<string, (req: unknown, opts?: object) => unknown>;
  const fn = client[method.localName]!;
  const abort = new AbortController();
  try {
    if (method.methodKind === "unary") {
      await fn(create(method.input, {}), { signal: abort.signal });
    } else if (method.methodKind === "server_streaming") {
      for await (const message of fn(create(method.input, {}), { signal: abort.signal }) as AsyncIterable<unknown>) {
        void message;
        break; // allowed: the first message (snapshot end, keep-alive) is enough
      }
    } else {
      const requests = new MessageQueue<unknown>();
      requests.end();
      for await (const message of fn(requests, { signal: abort.signal }) as AsyncIterable<unknown>) void message;
    }
    return undefined;
  } catch (error) {
    return ConnectError.from(error);
  } finally {
    abort.abort();
  }
}

const keys = {
  producer: await createTestKey(s.server.engine.database, "acme", ["producer"]),
  worker: await createTestKey(s.server.engine.database, "acme", ["worker"]),
  watcher: await createTestKey(s.server.engine.database, "acme", ["watcher"]),
  admin: await createTestKey(s.server.engine.database, "acme", ["admin"]),
  "producer,watcher": await createTestKey(s.server.engine.database, "acme", ["producer", "watcher"]),
  operator: await createTestKey(s.server.engine.database, "default", ["admin"]),
};

t.test("the matrix names every procedure", async (t) => {
  t.same(methods.map((m) => m.procedure).sort(), Object.keys(MATRIX).sort());
});


for (const [name, key] of Object.entries(keys)) {
  const roles = name === "operator" ? ["admin"] : name.split(",");
  t.test(`a key with ${name}`, async (t) => {
    for (const { service, method, procedure } of methods) {
      const rule = MATRIX[procedure]!;
      const allowed = rule === "op" ? name === "operator" : roles.includes("admin") || rule.some((role) => roles.includes(role));
      const error = await call(key.token, service, method);
      if (allowed) {
        t.ok(error === undefined || (error.code !== Code.PermissionDenied && error.code !== Code.Unauthenticated), `${procedure} allowed${error === undefined ? "" : ` (answered ${Code[error.code]})`}`);
      } else {
        t.equal(error?.code, Code.PermissionDenied, `${procedure} denied`);
        const needed = rule === "op" ? /needs an operator key: the admin role in namespace "default"/ : rule.length === 0 ? /needs the admin role/ : new RegExp(`needs (the ${rule[0]} role|one of the roles ${rule.join(", ")})`);
        t.match(error?.rawMessage ?? "", needed, `${procedure}: the message names the role needed`);
      }
    }
  });
}

t.test("no key, a malformed header, an unknown key or a wrong secret: UNAUTHENTICATED; health is public", async (t) => {
  const secret = keys.admin.token.slice(20);
  const wrongSecret = keys.admin.token.slice(0, 20) + (secret[0] === "A" ? "B" : "A") + secret.slice(1);
  const cases: [string, string | undefined, RegExp][] = [
    ["no key", undefined, /requires an API key/],
    ["not a token", "hello", /not a Taskwire API key/],
    ["an unknown key id", `tw_0123456789abcdef_${secret}`, /the API key is not valid/],
    ["a wrong secret", wrongSecret, /the API key is not valid/],
  ];
  for (const [what, token, message] of cases) {
    const error = await call(token, SERVICES[1], SERVICES[1].method.listTasks);
    t.equal(error?.code, Code.Unauthenticated, what);
    t.match(error?.rawMessage ?? "", message, `${what}: ${error?.rawMessage}`);
  }
  const basic = await clientsFor(s.url, undefined).tasks.listTasks({}, { headers: { authorization: "Basic abc" } }).catch((e: unknown) => ConnectError.from(e));
  t.match((basic as ConnectError).rawMessage, /must be "Bearer <token>"/, "another scheme");
  const health = createClient(Health, clientsFor(s.url, undefined).transport);
  t.equal((await health.check({ service: "" })).status, 1, "health answers SERVING without a key");
});
