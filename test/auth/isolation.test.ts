/**
 * Tenant isolation, over every RPC and stream: keys of namespace alpha (each role, and admin)
 * aimed at namespace beta's job type, tasks (pending, running, dead), worker, lease, events and
 * keys. Each call must answer NOT_FOUND or PERMISSION_DENIED, or (lists, streams) show nothing of
 * beta; afterwards every row of beta is exactly as it was, and no beta event reached alpha's streams.
 */
import { create, type DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import t from "tap";
import { deniedReason, PROCEDURE_ACCESS, type Role as RoleName } from "../../src/core/roles.js";
import { Role } from "../../src/gen/taskwire/v1/admin_pb.js";
import { ClaimRequestSchema, type ClaimResponse } from "../../src/gen/taskwire/v1/worker_pb.js";
import { MessageQueue } from "../../src/server/message-queue.js";
import { SERVICES } from "../../src/server/routes.js";
import { jsonAny } from "../helpers/payload.js";
import { clientsFor, createTestKey, startTestServer } from "../helpers/server.js";

const s = await startTestServer(t, { streamKeepaliveMs: 200 });
const db = s.server.engine.database.db;

const betaKey = await createTestKey(s.server.engine.database, "beta", ["admin"]);
const beta = clientsFor(s.url, betaKey.token);
const alphaKeys = {
  admin: await createTestKey(s.server.engine.database, "alpha", ["admin"]),
  producer: await createTestKey(s.server.engine.database, "alpha", ["producer"]),
  worker: await createTestKey(s.server.engine.database, "alpha", ["worker"]),
  watcher: await createTestKey(s.server.engine.database, "alpha", ["watcher"]),
};
const alphaAdmin = clientsFor(s.url, alphaKeys.admin.token);
await alphaAdmin.jobTypes.registerJobType({ name: "alpha.job" });

// Beta's objects: a job type, a pending task, a running task (with its lease), a dead task, a worker, events.
await beta.jobTypes.registerJobType({ name: "beta.job", defaultMaxAttempts: 1 });
const pending = (await beta.tasks.submit({ task: { jobType: "beta.job", input: jsonAny("pending") } })).task!;
const runningTask = (await beta.tasks.submit({ task: { jobType: "beta.job", input: jsonAny("running") } })).task!;
const deadTask = (await beta.tasks.submit({ task: { jobType: "beta.job", input: jsonAny("dead"), priority: 10 } })).task!;
const claimed = (await beta.workers.claimTasks({ workerId: "beta-worker", jobTypes: ["beta.job"], maxTasks: 1 })).assignments[0]!;
await beta.workers.failTask({ failure: { taskId: claimed.taskId, attempt: claimed.attempt, leaseToken: claimed.leaseToken, error: "boom", nonRetryable: true } });
const lease = (await beta.workers.claimTasks({ workerId: "beta-worker", jobTypes: ["beta.job"], maxTasks: 1 })).assignments[0]!;
// A schedule that fires once a year, so the scheduler leaves beta alone while the table runs.
await beta.schedules.createSchedule({ name: "beta-yearly", cron: "0 0 1 1 *", task: { jobType: "beta.job", input: jsonAny("yearly") } });
if (claimed.taskId !== deadTask.id) throw new Error("set-up: the high-priority task should have been claimed first");
const betaRunningId = lease.taskId;
const betaPendingId = [pending.id, runningTask.id].find((id) => id !== betaRunningId)!;
const betaLease = { taskId: lease.taskId, attempt: lease.attempt, leaseToken: lease.leaseToken };
const betaIds = [pending.id, runningTask.id, deadTask.id];

/** Every row of beta, as text: any change to any of them changes this. */
async function betaState(): Promise<string> {
  const [row] = await db.query<{ state: string }>(`
    SELECT concat_ws(' | ',
      (SELECT string_agg(row(t.*)::text, ',' ORDER BY t.id) FROM task t WHERE t.namespace = 'beta'),
      (SELECT string_agg(row(a.*)::text, ',' ORDER BY a.task_id, a.number) FROM task_attempt a JOIN task t ON t.id = a.task_id WHERE t.namespace = 'beta'),
      (SELECT string_agg(row(e.*)::text, ',' ORDER BY e.seq) FROM task_event e WHERE e.namespace = 'beta'),
      (SELECT string_agg(row(j.*)::text, ',' ORDER BY j.name) FROM job_type j WHERE j.namespace = 'beta'),
      (SELECT string_agg(row(w.*)::text, ',' ORDER BY w.id) FROM worker w WHERE w.namespace = 'beta'),
      (SELECT string_agg(row(s.*)::text, ',' ORDER BY s.name) FROM schedule s WHERE s.namespace = 'beta'),
      (SELECT string_agg(concat_ws('/', k.id, k.roles, k.revoked_at, k.expires_at), ',' ORDER BY k.id) FROM api_key k WHERE k.namespace = 'beta'),
      (SELECT string_agg(row(x.*)::text, ',' ORDER BY x.id) FROM audit_event x WHERE x.namespace = 'beta'),
      (SELECT row(n.*)::text FROM namespace n WHERE n.name = 'beta')) AS state`);
  return row!.state;
}

type Clients = ReturnType<typeof clientsFor>;
/**
 * What a case expects: a refusal (NOT_FOUND or PERMISSION_DENIED); "not found", which is NOT_FOUND
 * for a key whose roles allow the call (beta's object must look like no object) and PERMISSION_DENIED
 * otherwise; or a result holding nothing of beta.
 */
type Outcome = "refused" | "not found" | ((result: unknown) => void);

interface Case {
  procedure: keyof typeof PROCEDURE_ACCESS;
  name: string;
  call: (c: Clients) => Promise<unknown>;
  expect: Outcome;
}

/** Collects a stream for `ms` after it opened, or until it fails (the failure is returned). */
async function collect<T>(stream: AsyncIterable<T>, ms: number): Promise<T[] | ConnectError> {
  const { seen, error } = await collectAll(stream, ms);
  return error ?? seen;
}

/**
 * Collects a stream for `ms`, or until it ends or fails; returns what it saw either way. `seen`
 * fills as messages arrive, so a caller can wait for one before it stops the stream.
 */
async function collectAll<T>(stream: AsyncIterable<T>, ms: number, seen: T[] = []): Promise<{ seen: T[]; error?: ConnectError }> {
  try {
    const iterator = stream[Symbol.asyncIterator]();
    const deadline = Date.now() + ms;
    for (;;) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) break;
      let timer: NodeJS.Timeout | undefined;
      let next;
      try {
        next = await Promise.race([iterator.next(), new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), remaining)))]);
      } finally {
        // Also when the stream fails (an aborted watch): a pending timer would keep this file's
        // process alive for up to a minute after its tests end.
        clearTimeout(timer);
      }
      if (next === "timeout" || next.done === true) {
        void iterator.return?.();
        break;
      }
      seen.push(next.value);
    }
    return { seen };
  } catch (error) {
    return { seen, error: ConnectError.from(error) };
  }
}

/** A raw Claim stream: sends `messages`, collects responses for `ms`. */
function claim(c: Clients, messages: Parameters<typeof create<typeof ClaimRequestSchema>>[1][], ms: number) {
  const requests = new MessageQueue<ReturnType<typeof create<typeof ClaimRequestSchema>>>();
  for (const m of messages) requests.push(create(ClaimRequestSchema, m));
  const abort = new AbortController();
  setTimeout(() => abort.abort(), ms);
  return collect<ClaimResponse>(c.workers.claim(requests, { signal: abort.signal }), ms - 50).finally(() => requests.end());
}

const noneOfBeta = (ids: (r: any) => string[]) => (result: unknown) => {
  const found = ids(result).filter((id) => betaIds.includes(id) || id.startsWith("beta"));
  if (found.length > 0) throw new Error(`beta's objects leaked: ${found.join(", ")}`);
};

const cases: Case[] = [
  { procedure: "taskwire.v1.TaskService/Submit", name: "submit to beta's job type", call: (c) => c.tasks.submit({ task: { jobType: "beta.job", input: jsonAny(1) } }), expect: "not found" },
  { procedure: "taskwire.v1.TaskService/SubmitBatch", name: "batch to beta's job type", call: (c) => c.tasks.submitBatch({ tasks: [{ jobType: "beta.job", input: jsonAny(1) }] }), expect: "not found" },
  { procedure: "taskwire.v1.TaskService/GetTask", name: "get beta's pending task", call: (c) => c.tasks.getTask({ id: betaPendingId }), expect: "not found" },
  { procedure: "taskwire.v1.TaskService/GetTask", name: "get beta's running task", call: (c) => c.tasks.getTask({ id: betaRunningId }), expect: "not found" },
  { procedure: "taskwire.v1.TaskService/ListTasks", name: "list all", call: (c) => c.tasks.listTasks({}), expect: noneOfBeta((r) => r.tasks.map((x: { id: string }) => x.id)) },
  {
    procedure: "taskwire.v1.TaskService/ListTasks",
    name: "list by beta's job type and worker",
    call: async (c) => [await c.tasks.listTasks({ jobTypes: ["beta.job"] }), await c.tasks.listTasks({ workerId: "beta-worker" })],
    expect: (r) => {
      for (const page of r as { tasks: unknown[]; totalCount: bigint }[]) if (page.tasks.length > 0 || page.totalCount !== 0n) throw new Error("beta's tasks were counted or listed");
    },
  },
  { procedure: "taskwire.v1.TaskService/Cancel", name: "cancel beta's pending task", call: (c) => c.tasks.cancel({ id: betaPendingId }), expect: "not found" },
  { procedure: "taskwire.v1.TaskService/Cancel", name: "cancel beta's running task", call: (c) => c.tasks.cancel({ id: betaRunningId }), expect: "not found" },
  { procedure: "taskwire.v1.TaskService/Retry", name: "retry beta's dead task", call: (c) => c.tasks.retry({ id: deadTask.id, additionalAttempts: 1 }), expect: "not found" },
  { procedure: "taskwire.v1.TaskService/WaitTask", name: "wait for beta's task", call: (c) => c.tasks.waitTask({ id: betaPendingId, timeout: { seconds: 1n, nanos: 0 } }), expect: "not found" },
  {
    procedure: "taskwire.v1.TaskService/StreamStatus",
    name: "stream beta's tasks by id, and replay everything since 0",
    call: async (c) => {
      const seen: unknown[] = [];
      for (const request of [{ taskIds: betaIds }, { since: 0n }]) {
        const { seen: messages, error } = await collectAll(c.tasks.streamStatus(request), 400);
        if (error !== undefined) throw error;
        seen.push(...messages);
      }
      return seen;
    },
    expect: noneOfBeta((r) => (r as { message: { case: string; value: { id?: string; taskId?: string } } }[]).filter((m) => m.message.case !== "keepalive").map((m) => m.message.value.id ?? m.message.value.taskId ?? "")),
  },
  { procedure: "taskwire.v1.JobTypeService/GetJobType", name: "get beta's job type", call: (c) => c.jobTypes.getJobType({ name: "beta.job" }), expect: "not found" },
  { procedure: "taskwire.v1.JobTypeService/ListJobTypes", name: "list job types", call: (c) => c.jobTypes.listJobTypes({}), expect: noneOfBeta((r) => r.jobTypes.map((j: { name: string }) => j.name)) },
  { procedure: "taskwire.v1.WorkerService/ClaimTasks", name: "claim beta's job type", call: (c) => c.workers.claimTasks({ workerId: "w", jobTypes: ["beta.job"], maxTasks: 10 }), expect: "not found" },
  { procedure: "taskwire.v1.WorkerService/Heartbeat", name: "heartbeat beta's lease as beta's worker", call: (c) => c.workers.heartbeat({ workerId: "beta-worker", leases: [betaLease] }), expect: (r) => { if ((r as { held: unknown[] }).held.length > 0) throw new Error("beta's lease was extended"); } },
  { procedure: "taskwire.v1.WorkerService/ReportProgress", name: "progress on beta's lease", call: (c) => c.workers.reportProgress({ progress: { ...betaLease, fraction: 0.5, message: "hijacked" } }), expect: "not found" },
  { procedure: "taskwire.v1.WorkerService/SaveCheckpoint", name: "checkpoint beta's lease", call: (c) => c.workers.saveCheckpoint({ checkpoint: { ...betaLease, checkpoint: { data: { case: "binary", value: new Uint8Array([1]) } } } }), expect: "not found" },
  { procedure: "taskwire.v1.WorkerService/ReleaseTask", name: "release beta's lease", call: (c) => c.workers.releaseTask({ release: { ...betaLease, reason: "x" } }), expect: "not found" },
  { procedure: "taskwire.v1.WorkerService/CompleteTask", name: "complete beta's lease", call: (c) => c.workers.completeTask({ completion: { ...betaLease, output: jsonAny("stolen") } }), expect: "not found" },
  { procedure: "taskwire.v1.WorkerService/FailTask", name: "fail beta's lease", call: (c) => c.workers.failTask({ failure: { ...betaLease, error: "x", nonRetryable: true } }), expect: "not found" },
  { procedure: "taskwire.v1.WorkerService/ListWorkers", name: "list workers", call: (c) => c.workers.listWorkers({ includeDisconnected: true }), expect: noneOfBeta((r) => r.workers.filter((w: { jobTypes: string[] }) => w.jobTypes.includes("beta.job")).map((w: { workerId: string }) => w.workerId)) },
  {
    procedure: "taskwire.v1.WorkerService/Claim",
    name: "claim stream for beta's job type",
    call: async (c) => {
      const result = await claim(c, [{ message: { case: "hello", value: { workerId: "w", jobTypes: ["beta.job"], credits: 5, held: [] } } }], 600);
      if (result instanceof ConnectError) throw result;
      return result;
    },
    expect: "not found",
  },
  {
    procedure: "taskwire.v1.WorkerService/Claim",
    name: "claim stream adopting beta's lease and reporting on it",
    call: async (c) => {
      const result = await claim(
        c,
        [
          { message: { case: "hello", value: { workerId: "beta-worker", jobTypes: ["alpha.job"], credits: 5, held: [betaLease] } } },
          { message: { case: "complete", value: { ...betaLease, output: jsonAny("stolen") } } },
          { message: { case: "heartbeat", value: {} } },
        ],
        800,
      );
      if (result instanceof ConnectError) throw result;
      return result;
    },
    expect: (r) => {
      const messages = (r as ClaimResponse[]).map((m) => m.message);
      const welcome = messages.find((m) => m.case === "welcome");
      if (welcome?.case !== "welcome" || welcome.value.adopted.length > 0) throw new Error("beta's lease was adopted");
      if (messages.some((m) => m.case === "assignments")) throw new Error("a task was assigned");
      const result = messages.find((m) => m.case === "reportResult");
      if (result?.case !== "reportResult" || result.value.accepted) throw new Error("the report on beta's lease was accepted");
    },
  },
  { procedure: "taskwire.v1.ScheduleService/CreateSchedule", name: "schedule beta's job type", call: (c) => c.schedules.createSchedule({ name: "stolen", cron: "* * * * *", task: { jobType: "beta.job", input: jsonAny(1) } }), expect: "not found" },
  { procedure: "taskwire.v1.ScheduleService/GetSchedule", name: "get beta's schedule", call: (c) => c.schedules.getSchedule({ name: "beta-yearly" }), expect: "not found" },
  { procedure: "taskwire.v1.ScheduleService/ListSchedules", name: "list schedules", call: (c) => c.schedules.listSchedules({}), expect: noneOfBeta((r) => r.schedules.map((x: { name: string }) => x.name)) },
  { procedure: "taskwire.v1.ScheduleService/PauseSchedule", name: "pause beta's schedule", call: (c) => c.schedules.pauseSchedule({ name: "beta-yearly" }), expect: "not found" },
  { procedure: "taskwire.v1.ScheduleService/ResumeSchedule", name: "resume beta's schedule", call: (c) => c.schedules.resumeSchedule({ name: "beta-yearly" }), expect: "not found" },
  { procedure: "taskwire.v1.ScheduleService/DeleteSchedule", name: "delete beta's schedule", call: (c) => c.schedules.deleteSchedule({ name: "beta-yearly" }), expect: "not found" },
  { procedure: "taskwire.v1.AdminService/CreateApiKey", name: "create a key in beta", call: (c) => c.admin.createApiKey({ namespace: "beta", roles: [Role.ADMIN] }), expect: "refused" },
  { procedure: "taskwire.v1.AdminService/ListApiKeys", name: "list beta's keys", call: (c) => c.admin.listApiKeys({ namespace: "beta", includeInactive: true }), expect: "refused" },
  { procedure: "taskwire.v1.AdminService/ListApiKeys", name: "list own keys", call: (c) => c.admin.listApiKeys({ includeInactive: true }), expect: noneOfBeta((r) => r.keys.filter((k: { namespace: string }) => k.namespace !== "alpha").map((k: { id: string }) => `beta:${k.id}`)) },
  { procedure: "taskwire.v1.AdminService/ListAuditEvents", name: "read beta's audit log", call: (c) => c.admin.listAuditEvents({ namespace: "beta" }), expect: "refused" },
  { procedure: "taskwire.v1.AdminService/ListAuditEvents", name: "read own audit log", call: (c) => c.admin.listAuditEvents({}), expect: noneOfBeta((r) => r.events.filter((e: { namespace: string }) => e.namespace !== "alpha").map((e: { target: string }) => `beta:${e.target}`)) },
  { procedure: "taskwire.v1.AdminService/RevokeApiKey", name: "revoke beta's key", call: (c) => c.admin.revokeApiKey({ id: betaKey.id }), expect: "not found" },
  { procedure: "taskwire.v1.AdminService/CreateNamespace", name: "create a namespace", call: (c) => c.admin.createNamespace({ name: "gamma" }), expect: "refused" },
  { procedure: "taskwire.v1.AdminService/ListNamespaces", name: "list namespaces", call: (c) => c.admin.listNamespaces({}), expect: "refused" },
  { procedure: "taskwire.v1.JobTypeService/RegisterJobType", name: "register a job type", call: (c) => c.jobTypes.registerJobType({ name: "alpha.other" }), expect: () => undefined },
];

// Everything awaited at the top level happens before the first subtest (tap ends a file whose
// subtests are all done while the top level still awaits).
const before = await betaState();
// A watcher of beta, and alpha's watchers of everything, open while the table runs.
const watchStop = new AbortController();
const betaSeen: unknown[] = [];
const betaWatch = collectAll(beta.tasks.streamStatus({ since: 0n }, { signal: watchStop.signal }), 60_000, betaSeen);
const alphaSeen = (["admin", "producer", "watcher"] as const).map(() => [] as unknown[]);
const alphaWatches = (["admin", "producer", "watcher"] as const).map((role, i) => collectAll(clientsFor(s.url, alphaKeys[role].token).tasks.streamStatus({}, { signal: watchStop.signal }), 60_000, alphaSeen[i]));

t.test("the table covers every procedure except health", async (t) => {
  const all = SERVICES.flatMap((service) => service.methods.map((m: DescMethod) => `${service.typeName}/${m.name}`)).filter((p) => !p.startsWith("grpc.health"));
  t.same([...new Set(cases.map((c) => c.procedure))].sort(), all.sort());
});

for (const [role, key] of Object.entries(alphaKeys)) {
  const c = clientsFor(s.url, key.token);
  t.test(`alpha's ${role} key against beta`, async (t) => {
    for (const kase of cases) {
      let result: unknown;
      let error: ConnectError | undefined;
      try {
        result = await kase.call(c);
      } catch (caught) {
        error = ConnectError.from(caught);
      }
      if (kase.expect === "not found") {
        const expected = deniedReason(kase.procedure, { namespace: "alpha", roles: new Set([role as RoleName]) }) === undefined ? Code.NotFound : Code.PermissionDenied;
        t.equal(error === undefined ? "OK" : Code[error.code], Code[expected], `${kase.name}: ${error?.rawMessage ?? "succeeded"}`);
      }
      if (kase.expect === "refused" || kase.expect === "not found" || error !== undefined) {
        t.ok(error !== undefined && (error.code === Code.NotFound || error.code === Code.PermissionDenied), `${kase.name}: ${error === undefined ? "succeeded" : `${Code[error.code]} ${error.rawMessage}`}`);
        if (error !== undefined) t.notMatch(error.rawMessage, /"beta"/, `${kase.name}: the message does not name namespace beta`);
      } else {
        t.doesNotThrow(() => (kase.expect as (r: unknown) => void)(result), kase.name);
      }
    }
    t.equal(await betaState(), before, "every row of beta is unchanged");
  });
}

t.test("a job type of beta's name registered by alpha is alpha's own", async (t) => {
  const { created, jobType } = await alphaAdmin.jobTypes.registerJobType({ name: "beta.job", defaultMaxAttempts: 9 });
  t.equal(created, true, "created in alpha, not an update of beta's");
  t.equal(jobType?.defaultMaxAttempts, 9);
  t.equal((await beta.jobTypes.getJobType({ name: "beta.job" })).jobType?.defaultMaxAttempts, 1, "beta's is unchanged");
  t.equal(await betaState(), before, "every row of beta is unchanged");
});

type StatusMessage = { message: { case: string; value: { jobType?: string; taskId?: string } } };

t.test("beta's own changes reach beta's watcher and none of alpha's", async (t) => {
  await beta.tasks.cancel({ id: betaPendingId });
  const late = (await beta.tasks.submit({ task: { jobType: "beta.job", input: jsonAny("late") } })).task!;
  // Alpha changes something after beta did: alpha's watchers see it, and only it.
  const mine = (await alphaAdmin.tasks.submit({ task: { jobType: "alpha.job", input: jsonAny("alpha") } })).task!;
  const saw = (seen: unknown[], id: string) => (seen as StatusMessage[]).some((m) => m.message.case === "event" && m.message.value.taskId === id);
  // Until every watcher has its namespace's new task (bounded), then a moment more for anything that should not come.
  for (let i = 0; i < 100 && !(saw(betaSeen, late.id) && alphaSeen.every((seen) => saw(seen, mine.id))); i++) await new Promise((resolve) => setTimeout(resolve, 100));
  await new Promise((resolve) => setTimeout(resolve, 300));
  watchStop.abort();
  await Promise.all([betaWatch, ...alphaWatches]);
  t.ok(saw(betaSeen, late.id), "beta's watcher saw beta's new task");
  for (const seen of alphaSeen as StatusMessage[][]) {
    t.ok(saw(seen, mine.id), "alpha's watcher saw alpha's task");
    t.notOk(seen.some((m) => m.message.value.jobType === "beta.job" && m.message.value.taskId !== undefined && betaIds.concat(late.id).includes(m.message.value.taskId)), "no beta event reached alpha");
  }
});
