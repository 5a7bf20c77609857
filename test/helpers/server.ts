/** Starts a real Taskwire server (port 0, its own database) for one test file, and clients for it. */
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import type { Test } from "tap";
import { defaultConfig } from "../../src/config.js";
import { JobTypeService } from "../../src/gen/taskwire/v1/job_type_pb.js";
import { TaskService } from "../../src/gen/taskwire/v1/task_pb.js";
import { ScheduleService } from "../../src/gen/taskwire/v1/schedule_pb.js";
import { WorkerService } from "../../src/gen/taskwire/v1/worker_pb.js";
import { startServer, type RunningServer } from "../../src/main.js";
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
    },
    testLogger(),
  );
  t.teardown(() => server.stop());
  const transport = createGrpcTransport({ baseUrl: server.url });
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

/** A Connect (JSON over HTTP/1.1) transport, as curl and browsers speak. */
export function connectJsonTransport(url: string): Transport {
  return createConnectTransport({ baseUrl: url, httpVersion: "1.1", useBinaryFormat: false });
}
