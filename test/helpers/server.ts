/** Starts a real Taskwire server (port 0, its own database) for one test file, and clients for it. */
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import type { Test } from "tap";
import { defaultConfig } from "../../src/config.js";
import { JobTypeService } from "../../src/gen/taskwire/v1/job_type_pb.js";
import { TaskService } from "../../src/gen/taskwire/v1/task_pb.js";
import { ScheduleService } from "../../src/gen/taskwire/v1/schedule_pb.js";
import { WorkerService } from "../../src/gen/taskwire/v1/worker_pb.js";
import { startServer, type RunningServer } from "../../src/main.js";
import { DEFAULT_SERVER_LIMITS, type ServerLimits } from "../../src/core/limits.js";
import { AdminService } from "../../src/gen/taskwire/v1/admin_pb.js";
import type { Interceptor } from "@connectrpc/connect";
import { createApiKey, createNamespace } from "../../src/auth/key-admin.js";
import { TaskwireError } from "../../src/core/errors.js";
import type { Role } from "../../src/core/roles.js";
import type { Database } from "../../src/store/orm.js";
import { createTestDatabaseUrl } from "./database.js";
import { testLogger } from "./logger.js";

/** A server under test with typed clients over gRPC (HTTP/2). */
export interface TestServer {
  server: RunningServer;
  url: string;
  databaseUrl: string;
  transport: Transport;
  jobTypes: Client<typeof JobTypeService>;
  tasks: Client<typeof TaskService>;
  workers: Client<typeof WorkerService>;
  schedules: Client<typeof ScheduleService>;
}

/** Starts a server on a fresh database; stopped when the test ends. */
export async function startTestServer(
  t: Test,
  options: {
    safetyPollMs?: number;
    sweepIntervalMs?: number;
    retentionIntervalMs?: number;
    scheduleIntervalMs?: number;
    scheduleGraceMs?: number;
    /** Run inline job types from this folder (off unless set). */
    inline?: { dir: string; maxThreads: number; maxQueue?: number; memoryMb?: number; graceMs?: number };
    progressFlushMs?: number;
    databaseUrl?: string;
    streamKeepaliveMs?: number;
    eventBufferBytes?: number;
    requireAuth?: boolean;
    limits?: Partial<ServerLimits>;
    keyCacheMs?: number;
    tls?: { certFile: string; keyFile: string };
    /** The token the typed clients send (they send none when unset). */
    apiKey?: string;
  } = {},
): Promise<TestServer> {
  const databaseUrl = options.databaseUrl ?? (await createTestDatabaseUrl(t));
  const server = await startServer(
    {
      ...defaultConfig({}),
      port: 0,
      databaseUrl,
      logLevel: "silent",
      safetyPollMs: options.safetyPollMs ?? 1_000,
      sweepIntervalMs: options.sweepIntervalMs ?? 100,
      retentionIntervalMs: options.retentionIntervalMs ?? 60_000,
      scheduleIntervalMs: options.scheduleIntervalMs ?? 1_000,
      scheduleGraceMs: options.scheduleGraceMs ?? 60_000,
      inlineMaxThreads: options.inline?.maxThreads ?? 0,
      inlineDir: options.inline?.dir ?? "workers",
      inlineMaxQueue: options.inline?.maxQueue ?? 0,
      inlineMemoryMb: options.inline?.memoryMb ?? 512,
      inlineGraceMs: options.inline?.graceMs ?? 5_000,
      progressFlushMs: options.progressFlushMs ?? 50,
      streamKeepaliveMs: options.streamKeepaliveMs ?? 15_000,
      eventBufferBytes: options.eventBufferBytes ?? 8 * 1024 * 1024,
      requireAuth: options.requireAuth ?? false,
      limits: { ...DEFAULT_SERVER_LIMITS, ...options.limits },
      keyCacheMs: options.keyCacheMs ?? 5_000,
      tlsCertFile: options.tls?.certFile ?? null,
      tlsKeyFile: options.tls?.keyFile ?? null,
    },
    testLogger(),
  );
  t.teardown(async () => {
    // Clients' HTTP/2 connections first: a client socket left open lingers after the server has
    // gone (about a minute here) and keeps the test process alive.
    for (const session of sessionsOf.get(server.url) ?? []) session.abort();
    sessionsOf.delete(server.url);
    await server.stop();
  });
  const transport = grpcTransport(server.url, options.apiKey === undefined ? [] : [bearer(options.apiKey)]);
  return {
    server,
    url: server.url,
    databaseUrl,
    transport,
    jobTypes: createClient(JobTypeService, transport),
    tasks: createClient(TaskService, transport),
    workers: createClient(WorkerService, transport),
    schedules: createClient(ScheduleService, transport),
  };
}

/** HTTP/2 connections of the gRPC transports made for each test server (by URL), closed before it stops. */
const sessionsOf = new Map<string, Http2SessionManager[]>();

/** A gRPC transport to `url` whose connection the server's teardown closes. */
function grpcTransport(url: string, interceptors: Interceptor[]): Transport {
  const sessionManager = new Http2SessionManager(url);
  sessionsOf.set(url, [...(sessionsOf.get(url) ?? []), sessionManager]);
  return createGrpcTransport({ baseUrl: url, interceptors, sessionManager });
}

/** A Connect (JSON over HTTP/1.1) transport, as curl and browsers speak. */
export function connectJsonTransport(url: string): Transport {
  return createConnectTransport({ baseUrl: url, httpVersion: "1.1", useBinaryFormat: false });
}

/** Sends `token` as the bearer token of every call. */
export function bearer(token: string): Interceptor {
  return (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
}

/** Typed clients of every service, sending `token` (none when undefined), over gRPC or Connect JSON (HTTP/1.1). */
export function clientsFor(url: string, token: string | undefined, protocol: "grpc" | "json" = "grpc") {
  const interceptors = token === undefined ? [] : [bearer(token)];
  const transport =
    protocol === "grpc"
      ? grpcTransport(url, interceptors)
      : createConnectTransport({ baseUrl: url, httpVersion: "1.1", useBinaryFormat: false, interceptors });
  return {
    transport,
    jobTypes: createClient(JobTypeService, transport),
    tasks: createClient(TaskService, transport),
    workers: createClient(WorkerService, transport),
    admin: createClient(AdminService, transport),
    schedules: createClient(ScheduleService, transport),
  };
}

/** Creates a namespace (if missing) and a key in it directly on the database, as the CLI does; returns the token. */
export async function createTestKey(database: Pick<Database, "pool">, namespace: string, roles: Role[], options: { expiresInMs?: number } = {}): Promise<{ id: string; token: string }> {
  await createNamespace(database.pool, namespace, "cli").catch((error: unknown) => {
    if (!(error instanceof TaskwireError && error.code === "ALREADY_EXISTS")) throw error;
  });
  const { key, token } = await createApiKey(database.pool, { namespace, roles, expiresInMs: options.expiresInMs ?? null, description: "test", actor: "cli" });
  return { id: key.id, token };
}
