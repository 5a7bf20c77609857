/** WorkerService: the Claim stream and its unary fallbacks. */
import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Logger } from "pino";
import { invalidArgument, TaskwireError } from "../core/errors.js";
import { LIMITS } from "../core/limits.js";
import type { CompletionReport, FailureReport } from "../core/task.js";
import type { WorkerSession } from "../dispatch/dispatcher.js";
import type { Engine } from "../engine/engine.js";
import { Worker } from "../store/entities/index.js";
import {
  ClaimResponseSchema,
  RevokeReason,
  type ClaimRequest,
  type ClaimResponse,
  type TaskCompletion,
  type TaskFailure,
  type WorkerHello,
  type WorkerService,
} from "../gen/taskwire/v1/worker_pb.js";
import { ensureJsonRenderable } from "./json-rendering.js";
import { assignmentToProto } from "./mapping.js";
import { MessageQueue } from "./message-queue.js";
import type { PayloadTypes } from "./payloads.js";
import { namespaceOf } from "./request-context.js";
import { intInRange, leaseToken, requireName, taskId, truncate } from "./validation.js";
import { randomBytes } from "node:crypto";

/** Checks the job types a worker asks for: named well, registered, not too many. */
async function checkJobTypes(engine: Engine, namespace: string, names: readonly string[]): Promise<string[]> {
  if (names.length === 0 || names.length > LIMITS.maxWorkerJobTypes) {
    throw invalidArgument("job_types", `has ${names.length} names; send 1 to ${LIMITS.maxWorkerJobTypes}`);
  }
  const unique = [...new Set(names.map((name, i) => requireName(`job_types[${i}]`, name)))];
  for (const name of unique) {
    if ((await engine.jobTypes.find(namespace, name)) === undefined) {
      throw invalidArgument("job_types", `job type ${JSON.stringify(name)} is not registered in this namespace`);
    }
  }
  return unique;
}

/** A validated completion; the output is checked against the job type when the job type is known. */
async function completionReport(engine: Engine, payloads: PayloadTypes, namespace: string, c: TaskCompletion | undefined, jobTypeName: string | undefined): Promise<CompletionReport> {
  if (c === undefined) throw invalidArgument("completion", "is required");
  const report = { namespace, taskId: taskId("task_id", c.taskId), attempt: intInRange("attempt", c.attempt, 1, LIMITS.maxAttempts), leaseToken: leaseToken("lease_token", c.leaseToken) };
  const jobType = jobTypeName === undefined ? undefined : await engine.jobTypes.find(namespace, jobTypeName);
  const output = jobType === undefined
    ? (c.output === undefined ? null : { typeUrl: c.output.typeUrl, value: c.output.value })
    : payloads.check("output", c.output, jobType.outputType, jobType, true);
  return { ...report, output };
}

/** A validated failure (error text is truncated, never refused). */
function failureReport(namespace: string, f: TaskFailure | undefined): FailureReport {
  if (f === undefined) throw invalidArgument("failure", "is required");
  return {
    namespace,
    taskId: taskId("task_id", f.taskId),
    attempt: intInRange("attempt", f.attempt, 1, LIMITS.maxAttempts),
    leaseToken: leaseToken("lease_token", f.leaseToken),
    error: truncate(f.error === "" ? "(no error message)" : f.error, LIMITS.maxErrorChars),
    nonRetryable: f.nonRetryable,
    outcome: "failed",
  };
}

function response(message: ClaimResponse["message"]): ClaimResponse {
  return create(ClaimResponseSchema, { message });
}

/** The WorkerService implementation. */
export function createWorkerHandlers(engine: Engine, payloads: PayloadTypes, logger: Logger): Partial<ServiceImpl<typeof WorkerService>> {
  const em = () => engine.database.orm.em.fork();

  async function recordWorker(namespace: string, workerId: string, jobTypes: string[], credits: number): Promise<void> {
    const now = new Date();
    await em().upsert(Worker, { namespace, id: workerId, jobTypes, credits, connectedAt: now, lastSeenAt: now, disconnectedAt: null });
  }

  async function openSession(hello: WorkerHello, namespace: string, out: MessageQueue<ClaimResponse>): Promise<WorkerSession> {
    const workerId = hello.workerId === "" ? `worker-${randomBytes(4).toString("hex")}` : requireName("hello.worker_id", hello.workerId);
    const jobTypes = await checkJobTypes(engine, namespace, hello.jobTypes);
    const credits = intInRange("hello.credits", hello.credits, 1, LIMITS.maxCredits);
    await recordWorker(namespace, workerId, jobTypes, credits);
    out.push(response({ case: "welcome", value: { $typeName: "taskwire.v1.WorkerWelcome", workerId } }));
    return engine.dispatcher.open({
      namespace,
      workerId,
      jobTypes,
      credits,
      sink: {
        assign: (assignments) =>
          out.push(response({ case: "assignments", value: { $typeName: "taskwire.v1.AssignmentBatch", assignments: assignments.map(assignmentToProto) } })),
        revoke: (r) =>
          out.push(response({ case: "revoked", value: { $typeName: "taskwire.v1.TaskRevoked", taskId: r.taskId, attempt: r.attempt, reason: RevokeReason.CANCELLED, message: r.message } })),
      },
    });
  }

  /** Handles one report on a stream and answers it with report_result. */
  async function handleReport(session: WorkerSession, request: ClaimRequest, out: MessageQueue<ClaimResponse>): Promise<void> {
    const message = request.message;
    const named = message.case === "complete" || message.case === "fail" ? message.value : undefined;
    const answer = (accepted: boolean, error: string) =>
      out.push(response({ case: "reportResult", value: { $typeName: "taskwire.v1.ReportResult", taskId: named?.taskId ?? "", attempt: named?.attempt ?? 0, accepted, error } }));
    try {
      let report: CompletionReport | FailureReport;
      let accepted: boolean;
      if (message.case === "complete") {
        report = await completionReport(engine, payloads, session.namespace, message.value, session.inFlight.get(message.value.taskId)?.jobType);
        accepted = (await engine.dispatcher.complete(session, report)) !== undefined;
      } else if (message.case === "fail") {
        report = failureReport(session.namespace, message.value);
        accepted = (await engine.dispatcher.fail(session, report)) !== undefined;
      } else {
        throw invalidArgument("message", `${message.case ?? "an empty message"} is not allowed after hello; send complete or fail`);
      }
      answer(accepted, accepted ? "" : (await engine.tasks.explainRejection(report)).message);
    } catch (error) {
      if (error instanceof TaskwireError && error.code !== "INTERNAL") answer(false, error.message);
      else throw error;
    }
  }

  return {
    async *claim(requests: AsyncIterable<ClaimRequest>, ctx: HandlerContext) {
      const namespace = namespaceOf(ctx);
      const iterator = requests[Symbol.asyncIterator]();
      const first = await iterator.next();
      if (first.done === true) return;
      if (first.value.message.case !== "hello") {
        throw invalidArgument("message", "the first message of a Claim stream must be hello (job types and credits)");
      }
      const out = new MessageQueue<ClaimResponse>();
      const session = await openSession(first.value.message.value, namespace, out);
      const reports = new Set<Promise<void>>();
      const reading = (async () => {
        for (;;) {
          const next = await iterator.next();
          if (next.done === true) break;
          const pending = handleReport(session, next.value, out).catch((error: unknown) => out.end(error));
          reports.add(pending);
          void pending.finally(() => reports.delete(pending));
        }
        await Promise.all(reports); // answer every report before ending the stream
        out.end();
      })();
      reading.catch((error: unknown) => out.end(error));
      const onAbort = () => out.end();
      ctx.signal.addEventListener("abort", onAbort, { once: true });
      try {
        yield* out;
      } finally {
        ctx.signal.removeEventListener("abort", onAbort);
        await engine.dispatcher.close(session, ctx.signal.aborted ? "stream aborted" : "stream closed");
        await em()
          .nativeUpdate(Worker, { namespace, id: session.workerId }, { disconnectedAt: new Date() })
          .catch((error: unknown) => logger.warn({ err: error }, "could not record a worker's disconnect"));
      }
    },

    async claimTasks(req, ctx) {
      const namespace = namespaceOf(ctx);
      const workerId = requireName("worker_id", req.workerId);
      const jobTypes = await checkJobTypes(engine, namespace, req.jobTypes);
      const limit = intInRange("max_tasks", req.maxTasks, 1, LIMITS.maxCredits);
      // Checked before claiming: a claimed task that cannot be delivered would sit RUNNING.
      const inputs = await Promise.all(jobTypes.map(async (name) => ({ name, jobType: await engine.jobTypes.get(namespace, name) })));
      await ensureJsonRenderable(
        ctx,
        namespace,
        inputs.filter((x) => x.jobType.inputType !== "").map((x) => ({ jobType: x.name, payloads: [{ typeUrl: `type.googleapis.com/${x.jobType.inputType}`, value: new Uint8Array() }] })),
        engine.jobTypes,
        payloads,
      );
      const assignments = await engine.tasks.claim({ namespace, workerId, jobTypes, limit });
      return { assignments: assignments.map(assignmentToProto) };
    },

    async completeTask(req, ctx) {
      const namespace = namespaceOf(ctx);
      const id = req.completion === undefined ? undefined : taskId("completion.task_id", req.completion.taskId);
      const task = id === undefined ? undefined : await engine.tasks.get(namespace, id).catch(() => undefined);
      await engine.tasks.complete(await completionReport(engine, payloads, namespace, req.completion, task?.jobType));
      return {};
    },

    async failTask(req, ctx) {
      await engine.tasks.fail(failureReport(namespaceOf(ctx), req.failure));
      return {};
    },
  };
}
