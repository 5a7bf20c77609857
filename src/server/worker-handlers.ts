/** WorkerService: the Claim stream and its unary fallbacks. */
import { create, toBinary } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Logger } from "pino";
import { invalidArgument, TaskwireError } from "../core/errors.js";
import { LIMITS, type ServerLimits } from "../core/limits.js";
import { decodePageKey, encodePageToken, filterFingerprint, isNameKey } from "../core/page-token.js";
import type { Assignment, CompletionReport, FailureReport, JobTypeRecord, LeaseRef, ProgressReport, ReleaseReport } from "../core/task.js";
import type { RevokeReason, WorkerSession } from "../dispatch/dispatcher.js";
import { taskAdopt } from "../store/sql/task-adopt.js";
import { taskLeaseState } from "../store/sql/task-lease-state.js";
import { CheckpointSchema } from "../gen/taskwire/v1/task_pb.js";
import type { Engine } from "../engine/engine.js";
import { Worker } from "../store/entities/index.js";
import {
  AssignmentBatchSchema,
  ClaimResponseSchema,
  LeaseSchema,
  ReportKind,
  ReportResultBatchSchema,
  ReportResultSchema,
  RevokeReason as ProtoRevokeReason,
  TaskRevokedSchema,
  WorkerInfoSchema,
  WorkerWelcomeSchema,
  type ClaimRequest,
  type ClaimResponse,
  type ReportBatch,
  type ReportResult,
  type TaskCheckpoint,
  type TaskCompletion,
  type TaskFailure,
  type TaskProgress,
  type TaskRelease,
  type WorkerHello,
  type WorkerService,
} from "../gen/taskwire/v1/worker_pb.js";
import { ensureJsonRenderable, isJsonRequest, type Rendered } from "./json-rendering.js";
import { assignmentToProto } from "./mapping.js";
import { MessageQueue } from "./message-queue.js";
import { checkTypeUrl, typeNameOf, type PayloadTypes } from "./payloads.js";
import { namespaceOf } from "./request-context.js";
import { intInRange, leaseToken, pageSize, requireName, taskId, truncate } from "./validation.js";
import { isTaskId } from "../core/task-id.js";
import { randomBytes } from "node:crypto";

/** Checks the job types a worker asks for: named well, registered, not too many. */
async function checkJobTypes(engine: Engine, namespace: string, names: readonly string[]): Promise<string[]> {
  if (names.length === 0 || names.length > LIMITS.maxWorkerJobTypes) {
    throw invalidArgument("job_types", `has ${names.length} names; send 1 to ${LIMITS.maxWorkerJobTypes}`);
  }
  const unique = [...new Set(names.map((name, i) => requireName(`job_types[${i}]`, name)))];
  for (const name of unique) {
    if ((await engine.jobTypes.find(namespace, name)) === undefined) {
      // NOT_FOUND, as for a job type of another namespace (which must look the same).
      throw new TaskwireError("NOT_FOUND", `job_types: job type ${JSON.stringify(name)} is not registered in this namespace`);
    }
  }
  return unique;
}

/** A validated completion; the output is checked against the job type when the job type is known. */
function completionReport(payloads: PayloadTypes, namespace: string, c: TaskCompletion | undefined, jobType: JobTypeRecord | undefined): CompletionReport {
  if (c === undefined) throw invalidArgument("completion", "is required");
  const report = leaseRef(namespace, c, "completion");
  if (c.output !== undefined) checkTypeUrl("completion.output", c.output.typeUrl);
  const output = jobType === undefined
    ? (c.output === undefined ? null : { typeUrl: c.output.typeUrl, value: c.output.value })
    : payloads.check("completion.output", c.output, jobType.outputType, jobType, true);
  return { ...report, output };
}

/** A validated failure (error text is truncated, never refused). */
function failureReport(namespace: string, f: TaskFailure | undefined): FailureReport {
  if (f === undefined) throw invalidArgument("failure", "is required");
  return {
    ...leaseRef(namespace, f),
    error: truncate(f.error === "" ? "(no error message)" : f.error, LIMITS.maxErrorChars),
    nonRetryable: f.nonRetryable,
    outcome: "failed",
  };
}

/** A validated lease reference (task id, attempt, token). */
function leaseRef(namespace: string, l: { taskId: string; attempt: number; leaseToken: string } | undefined, field = "lease"): LeaseRef {
  if (l === undefined) throw invalidArgument(field, "is required");
  return {
    namespace,
    taskId: taskId(`${field}.task_id`, l.taskId),
    // Attempts are int4 in the database (and at most max_attempts, 1000).
    attempt: intInRange(`${field}.attempt`, l.attempt, 1, 2_147_483_647),
    leaseToken: leaseToken(`${field}.lease_token`, l.leaseToken),
  };
}

/** A validated release. */
function releaseReport(namespace: string, r: TaskRelease | undefined): ReleaseReport {
  if (r === undefined) throw invalidArgument("release", "is required");
  return { ...leaseRef(namespace, r, "release"), reason: truncate(r.reason === "" ? "released by the worker" : r.reason, LIMITS.maxReasonChars) };
}

/** A validated progress report. */
function progressReport(namespace: string, p: TaskProgress | undefined): ProgressReport {
  if (p === undefined) throw invalidArgument("progress", "is required");
  if (!(p.fraction >= 0 && p.fraction <= 1)) throw invalidArgument("progress.fraction", `is ${p.fraction}; allowed: 0 to 1`);
  return { ...leaseRef(namespace, p, "progress"), fraction: p.fraction, message: truncate(p.message, LIMITS.maxProgressChars) };
}

/** A validated checkpoint, encoded for storage. */
function checkpointBytes(c: TaskCheckpoint | undefined): Uint8Array {
  if (c?.checkpoint === undefined || c.checkpoint.data.case === undefined) {
    throw invalidArgument("checkpoint.checkpoint", "is required: binary bytes or a JSON value");
  }
  const bytes = toBinary(CheckpointSchema, c.checkpoint);
  if (bytes.byteLength > LIMITS.maxCheckpointBytes) {
    throw invalidArgument("checkpoint.checkpoint", `is ${bytes.byteLength} bytes; the limit is ${LIMITS.maxCheckpointBytes} bytes`);
  }
  return bytes;
}

/** A final report of one attempt, as a single message or one entry of a ReportBatch. */
type FinalReport =
  | { kind: ReportKind.COMPLETE; value: TaskCompletion }
  | { kind: ReportKind.FAIL; value: TaskFailure }
  | { kind: ReportKind.RELEASE; value: TaskRelease };

/** The reports of a batch, bounded like a stream's credits. */
function finalReportsOf(batch: ReportBatch): FinalReport[] {
  const count = batch.completions.length + batch.failures.length + batch.releases.length;
  if (count === 0 || count > LIMITS.maxCredits) {
    throw invalidArgument("reports", `carries ${count} reports; send 1 to ${LIMITS.maxCredits} per message`);
  }
  return [
    ...batch.completions.map((value) => ({ kind: ReportKind.COMPLETE, value }) as const),
    ...batch.failures.map((value) => ({ kind: ReportKind.FAIL, value }) as const),
    ...batch.releases.map((value) => ({ kind: ReportKind.RELEASE, value }) as const),
  ];
}

function reportResult(kind: ReportKind, lease: { taskId: string; attempt: number }, accepted: boolean, error: string): ReportResult {
  return create(ReportResultSchema, { taskId: lease.taskId, attempt: lease.attempt, accepted, error, kind });
}

/** The payloads of assignments (inputs, dependencies' outputs) whose types the JSON registry does not know yet. */
function notInJsonRegistry(namespace: string, assignments: readonly Assignment[], payloads: PayloadTypes): Rendered[] {
  const unknown: Rendered[] = [];
  const known = (typeUrl: string) => payloads.knowsJson(namespace, typeNameOf(typeUrl));
  for (const a of assignments) {
    if (!known(a.input.typeUrl)) unknown.push({ jobType: a.jobType, payloads: [a.input] });
    for (const p of a.parents) if (p.output !== null && !known(p.output.typeUrl)) unknown.push({ jobType: p.jobType, payloads: [p.output] });
  }
  return unknown;
}

function response(message: ClaimResponse["message"]): ClaimResponse {
  return create(ClaimResponseSchema, { message });
}

const REVOKE_REASONS: Record<RevokeReason, ProtoRevokeReason> = {
  cancelled: ProtoRevokeReason.CANCELLED,
  timed_out: ProtoRevokeReason.TIMED_OUT,
  lease_lost: ProtoRevokeReason.LEASE_LOST,
};

/** The WorkerService implementation. */
export function createWorkerHandlers(engine: Engine, payloads: PayloadTypes, logger: Logger, limits: ServerLimits): Partial<ServiceImpl<typeof WorkerService>> {
  const em = () => engine.database.orm.em.fork();

  async function recordWorker(namespace: string, workerId: string, jobTypes: string[], credits: number, connectedAt: Date): Promise<void> {
    await em().upsert(Worker, { namespace, id: workerId, jobTypes, credits, connectedAt, lastSeenAt: connectedAt, disconnectedAt: null });
  }

  /**
   * Checked before claiming for a JSON client: a claimed task whose input it cannot be sent would
   * sit RUNNING until its lease ends.
   */
  async function ensureInputsRenderable(ctx: HandlerContext, namespace: string, jobTypes: readonly string[]): Promise<void> {
    if (!isJsonRequest(ctx)) return;
    const records = await Promise.all(jobTypes.map((name) => engine.jobTypes.get(namespace, name)));
    const inputs = records.filter((r) => r.inputType !== "").map((r) => ({ jobType: r.name, payloads: [{ typeUrl: `type.googleapis.com/${r.inputType}`, value: new Uint8Array() }] }));
    await ensureJsonRenderable(ctx, namespace, inputs, engine.jobTypes, payloads);
  }

  /** Validates hello, records the worker, adopts still-held leases and opens the dispatch session. */
  async function openSession(hello: WorkerHello, namespace: string, out: MessageQueue<ClaimResponse>, connectedAt: Date, ctx: HandlerContext): Promise<WorkerSession> {
    const workerId = hello.workerId === "" ? `worker-${randomBytes(4).toString("hex")}` : requireName("hello.worker_id", hello.workerId);
    const jobTypes = await checkJobTypes(engine, namespace, hello.jobTypes);
    await ensureInputsRenderable(ctx, namespace, jobTypes);
    const credits = intInRange("hello.credits", hello.credits, 1, LIMITS.maxCredits);
    if (hello.held.length > LIMITS.maxCredits) throw invalidArgument("hello.held", `has ${hello.held.length} leases; the limit is ${LIMITS.maxCredits}`);
    const held = hello.held.map((l, i) => leaseRef(namespace, l, `hello.held[${i}]`));
    await recordWorker(namespace, workerId, jobTypes, credits, connectedAt);
    const adopted = await taskAdopt(engine.database.db, { namespace, workerId, leases: held });
    // Heartbeat three times per shortest lease, so one lost heartbeat never costs a lease.
    const records = await Promise.all(jobTypes.map((name) => engine.jobTypes.get(namespace, name)));
    const shortestLease = Math.min(...records.map((r) => r.leaseMs));
    out.push(
      response({
        case: "welcome",
        value: create(WorkerWelcomeSchema, {
          workerId,
          heartbeatInterval: durationFromMs(Math.floor(shortestLease / 3)),
          adopted: adopted.map((a) => create(LeaseSchema, { taskId: a.taskId, attempt: a.attempt, leaseToken: a.leaseToken })),
        }),
      }),
    );
    const adoptedIds = new Set(adopted.map((a) => `${a.taskId}/${a.attempt}`));
    for (const l of held) {
      if (adoptedIds.has(`${l.taskId}/${l.attempt}`)) continue;
      out.push(response({ case: "revoked", value: create(TaskRevokedSchema, { taskId: l.taskId, attempt: l.attempt, reason: ProtoRevokeReason.LEASE_LOST, message: `the lease of task ${l.taskId} attempt ${l.attempt} is no longer held` }) }));
    }
    // A JSON stream must be able to show what it is sent: the outputs of claimed tasks' dependencies
    // (of other job types, known only once claimed), and inputs of a type its job type took only
    // after the stream opened (re-registered). The check is asynchronous only when a type is not in
    // the JSON registry yet; messages after it wait, so the stream keeps its order. A task that
    // cannot be shown goes back to PENDING (its attempt does not count) and the stream ends with
    // FAILED_PRECONDITION saying why, as ClaimTasks answers.
    const json = isJsonRequest(ctx);
    let session: WorkerSession | undefined;
    let ordered: Promise<void> | undefined;
    const send = (push: () => void) => {
      if (ordered === undefined) push();
      else void ordered.then(push);
    };
    const deliver = (assignments: readonly Assignment[]) =>
      out.push(response({ case: "assignments", value: create(AssignmentBatchSchema, { assignments: assignments.map(assignmentToProto) }) }));
    const handBack = (assignments: readonly Assignment[], reason: string) =>
      Promise.all(
        assignments.map((a) =>
          engine.dispatcher
            .releaseTask({ namespace, taskId: a.taskId, attempt: a.attempt, leaseToken: a.leaseToken, reason })
            .catch((error: unknown) => logger.warn({ err: error, taskId: a.taskId }, "could not hand back an undelivered task")),
        ),
      );
    const checkThenDeliver = async (assignments: readonly Assignment[], unknown: Rendered[]) => {
      try {
        await ensureJsonRenderable(ctx, namespace, unknown, engine.jobTypes, payloads);
      } catch (error) {
        if (session !== undefined) engine.dispatcher.drain(session);
        await handBack(assignments, "not delivered: a payload cannot be rendered as JSON for this worker");
        out.end(error);
        return;
      }
      // The stream ended (or is ending) during the check: the worker never saw these (a revoked one's release is refused).
      if (session?.closed === true || session?.draining === true) await handBack(assignments, "not delivered: the worker was leaving");
      else deliver(assignments);
    };
    session = engine.dispatcher.open({
      namespace,
      workerId,
      jobTypes,
      credits,
      adopted,
      sink: {
        assign: (assignments) => {
          const unknown = json ? notInJsonRegistry(namespace, assignments, payloads) : [];
          if (unknown.length === 0) return send(() => deliver(assignments));
          const mine = (ordered ?? Promise.resolve()).then(() => checkThenDeliver(assignments, unknown));
          ordered = mine;
          void mine.finally(() => {
            if (ordered === mine) ordered = undefined;
          });
        },
        revoke: (r) =>
          send(() => out.push(response({ case: "revoked", value: create(TaskRevokedSchema, { taskId: r.taskId, attempt: r.attempt, reason: REVOKE_REASONS[r.reason], message: r.message }) }))),
      },
    });
    return session;
  }

  /** Handles one message after hello; reports are answered with report_result. */
  async function handleMessage(session: WorkerSession, request: ClaimRequest, out: MessageQueue<ClaimResponse>): Promise<void> {
    const message = request.message;
    switch (message.case) {
      case "heartbeat":
        await engine.dispatcher.heartbeat(session);
        return;
      case "drain":
        engine.dispatcher.drain(session);
        return;
      case "progress":
        try {
          engine.progress.report(progressReport(session.namespace, message.value));
        } catch (error) {
          if (!(error instanceof TaskwireError)) throw error;
          logger.debug({ err: error, workerId: session.workerId }, "ignored invalid progress");
        }
        return;
      case "complete":
        out.push(response({ case: "reportResult", value: (await handleFinalReports(session, [{ kind: ReportKind.COMPLETE, value: message.value }]))[0]! }));
        return;
      case "fail":
        out.push(response({ case: "reportResult", value: (await handleFinalReports(session, [{ kind: ReportKind.FAIL, value: message.value }]))[0]! }));
        return;
      case "release":
        out.push(response({ case: "reportResult", value: (await handleFinalReports(session, [{ kind: ReportKind.RELEASE, value: message.value }]))[0]! }));
        return;
      case "reports":
        out.push(response({ case: "reportResults", value: create(ReportResultBatchSchema, { results: await handleFinalReports(session, finalReportsOf(message.value)) }) }));
        return;
      case "checkpoint":
        out.push(response({ case: "reportResult", value: await handleCheckpoint(session, message.value) }));
        return;
      default:
        throw invalidArgument("message", `${message.case ?? "an empty message"} is not allowed after hello; send complete, fail, reports, heartbeat, progress, checkpoint, release or drain`);
    }
  }

  /**
   * Answers final reports (alone or from one ReportBatch): each is validated on its own, then all
   * are written together, so a batch costs one pass and shares the report batcher's statements.
   * A report that is invalid or names a lease that is not current is answered accepted=false with
   * the reason; only a database failure fails the whole stream.
   */
  async function handleFinalReports(session: WorkerSession, reports: readonly FinalReport[]): Promise<ReportResult[]> {
    // Progress is only accepted while the task runs: write what is pending before the outcome.
    await engine.progress.flushBefore(session.namespace, reports.map((r) => r.value.taskId));
    const jobTypes = await jobTypesOf(session, reports);
    const results = await Promise.all(
      reports.map(async ({ kind, value }): Promise<ReportResult> => {
        let lease: LeaseRef;
        let accepted: boolean;
        try {
          switch (kind) {
            case ReportKind.COMPLETE: {
              let report: CompletionReport;
              try {
                report = completionReport(payloads, session.namespace, value, jobTypes.get(value.taskId));
              } catch (error) {
                const refused = await failRefusedOutput(leaseRef(session.namespace, value, "completion"), error);
                return reportResult(kind, value, false, refused);
              }
              lease = report;
              accepted = (await engine.dispatcher.complete(report)) !== undefined;
              break;
            }
            case ReportKind.FAIL: {
              const report = failureReport(session.namespace, value);
              lease = report;
              accepted = (await engine.dispatcher.fail(report)) !== undefined;
              break;
            }
            case ReportKind.RELEASE: {
              const report = releaseReport(session.namespace, value);
              lease = report;
              accepted = (await engine.dispatcher.releaseTask(report)) !== undefined;
              break;
            }
          }
        } catch (error) {
          if (error instanceof TaskwireError && error.code !== "INTERNAL") return reportResult(kind, value, false, error.message);
          throw error;
        }
        return reportResult(kind, value, accepted, accepted ? "" : (await engine.tasks.explainRejection(lease)).message);
      }),
    );
    return results;
  }

  /**
   * The job type of each task a completion names, to check its output against: from what the
   * session holds, or, for a task it does not hold (claimed by ClaimTasks or on another stream),
   * from the database. Each job type is looked up once; ids that are not task ids are left out
   * (their reports are refused on their own).
   */
  async function jobTypesOf(session: WorkerSession, reports: readonly FinalReport[]): Promise<Map<string, JobTypeRecord>> {
    const names = new Map<string, string>();
    const unheld: string[] = [];
    for (const r of reports) {
      if (r.kind !== ReportKind.COMPLETE) continue;
      const name = session.inFlight.get(r.value.taskId)?.jobType;
      if (name !== undefined) names.set(r.value.taskId, name);
      else if (isTaskId(r.value.taskId)) unheld.push(r.value.taskId);
    }
    if (unheld.length > 0) {
      for (const [id, row] of await taskLeaseState(engine.database.db, session.namespace, [...new Set(unheld)])) names.set(id, row.job_type);
    }
    const records = new Map<string, JobTypeRecord | undefined>();
    for (const name of new Set(names.values())) records.set(name, await engine.jobTypes.find(session.namespace, name));
    const found = new Map<string, JobTypeRecord>();
    for (const [id, name] of names) {
      const record = records.get(name);
      if (record !== undefined) found.set(id, record);
    }
    return found;
  }

  /**
   * A completion whose output its job type refuses (another message type, over the size limit)
   * can never succeed, and the worker is done with the task: the attempt fails with the reason,
   * so its lease and the worker's credit are freed and the task is retried or dead-lettered,
   * instead of running on, held, until the lease ends. Rethrows anything but such a refusal
   * (a malformed lease too); returns what to tell the worker. Pending progress is flushed by the caller.
   */
  async function failRefusedOutput(lease: LeaseRef, error: unknown): Promise<string> {
    if (!(error instanceof TaskwireError) || (error.code !== "INVALID_ARGUMENT" && error.code !== "RESOURCE_EXHAUSTED")) throw error;
    const failure: FailureReport = { ...lease, error: truncate(`the output was refused: ${error.message}`, LIMITS.maxErrorChars), nonRetryable: false, outcome: "failed" };
    const failed = (await engine.dispatcher.fail(failure)) !== undefined;
    return failed ? `${error.message}; the attempt was recorded as failed` : error.message;
  }

  async function handleCheckpoint(session: WorkerSession, value: TaskCheckpoint): Promise<ReportResult> {
    try {
      await engine.progress.flushBefore(session.namespace, [value.taskId]);
      const lease = leaseRef(session.namespace, value, "checkpoint");
      const accepted = await engine.tasks.checkpoint(lease, checkpointBytes(value)).then(
        () => true,
        (error: unknown) => {
          if (error instanceof TaskwireError && error.code !== "INTERNAL") return false;
          throw error;
        },
      );
      return reportResult(ReportKind.CHECKPOINT, value, accepted, accepted ? "" : (await engine.tasks.explainRejection(lease)).message);
    } catch (error) {
      if (error instanceof TaskwireError && error.code !== "INTERNAL") return reportResult(ReportKind.CHECKPOINT, value, false, error.message);
      throw error;
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
      const connectedAt = new Date();
      const out = new MessageQueue<ClaimResponse>();
      const session = await openSession(first.value.message.value, namespace, out, connectedAt, ctx);
      const pending = new Set<Promise<void>>();
      // A clean end is the worker's own: it sent drain, then closed its side of the stream. The
      // server ending the stream (its maximum duration, a revoked key, a payload JSON cannot show)
      // or a reset is not: the worker may still run its tasks and reconnect to adopt them.
      let drainSent = false;
      let halfClosed = false;
      const reading = (async () => {
        for (;;) {
          const next = await iterator.next();
          if (next.done === true) {
            halfClosed = true;
            break;
          }
          if (next.value.message.case === "drain") drainSent = true;
          const handled = handleMessage(session, next.value, out).catch((error: unknown) => out.end(error));
          pending.add(handled);
          void handled.finally(() => pending.delete(handled));
        }
        await Promise.all(pending); // answer every report before ending the stream
        out.end();
      })();
      reading.catch((error: unknown) => out.end(error));
      // Nothing more can reach the worker: assign it nothing more (what is claimed meanwhile goes back).
      const stopAssigning = () => engine.dispatcher.drain(session);
      const onAbort = () => {
        stopAssigning();
        out.end();
      };
      ctx.signal.addEventListener("abort", onAbort, { once: true });
      try {
        yield* out;
      } finally {
        ctx.signal.removeEventListener("abort", onAbort);
        stopAssigning();
        // Reports already received are written before the session's leftovers are judged.
        await Promise.allSettled(pending);
        // After a clean end what the worker still holds is lost now. After any other (a reset
        // looks like a normal end here) the leases stay until the worker reconnects and adopts
        // them, or the sweeper takes them back.
        await engine.dispatcher.close(session, { clean: drainSent && halfClosed, why: "it closed its stream while holding the task" });
        await em()
          .nativeUpdate(Worker, { namespace, id: session.workerId, connectedAt: { $lte: connectedAt } }, { disconnectedAt: new Date() })
          .catch((error: unknown) => logger.warn({ err: error }, "could not record a worker's disconnect"));
      }
    },

    async claimTasks(req, ctx) {
      const namespace = namespaceOf(ctx);
      const workerId = requireName("worker_id", req.workerId);
      const jobTypes = await checkJobTypes(engine, namespace, req.jobTypes);
      const limit = intInRange("max_tasks", req.maxTasks, 1, LIMITS.maxCredits);
      await ensureInputsRenderable(ctx, namespace, jobTypes);
      await em()
        .upsert(Worker, { namespace, id: workerId, jobTypes, credits: limit, connectedAt: new Date(), lastSeenAt: new Date(), disconnectedAt: null })
        .catch((error: unknown) => logger.warn({ err: error }, "could not record a worker"));
      const assignments = await engine.tasks.claim({ namespace, workerId, jobTypes, limit });
      // Dependencies' outputs are of other job types, known only now: a JSON answer that could not
      // show one hands the claimed tasks back (their attempts do not count) and says why.
      const parents = assignments.flatMap((a) => a.parents.map((p) => ({ jobType: p.jobType, payloads: [p.output] })));
      if (parents.length > 0) {
        try {
          await ensureJsonRenderable(ctx, namespace, parents, engine.jobTypes, payloads);
        } catch (error) {
          await Promise.all(assignments.map((a) => engine.dispatcher.releaseTask({ ...a, reason: "not delivered: a dependency's output cannot be rendered as JSON" })));
          throw error;
        }
      }
      return { assignments: assignments.map(assignmentToProto) };
    },

    async completeTask(req, ctx) {
      const namespace = namespaceOf(ctx);
      const id = req.completion === undefined ? undefined : taskId("completion.task_id", req.completion.taskId);
      const task = id === undefined ? undefined : await engine.tasks.get(namespace, id).catch(() => undefined);
      const jobType = task === undefined ? undefined : await engine.jobTypes.find(namespace, task.jobType);
      // Progress is only accepted while the task runs: write what is pending before the outcome.
      if (id !== undefined) await engine.progress.flushBefore(namespace, [id]);
      let report: CompletionReport;
      try {
        report = completionReport(payloads, namespace, req.completion, jobType);
      } catch (error) {
        const answer = await failRefusedOutput(leaseRef(namespace, req.completion, "completion"), error);
        throw new TaskwireError((error as TaskwireError).code, answer);
      }
      if ((await engine.dispatcher.complete(report)) === undefined) throw await engine.tasks.explainRejection(report);
      return {};
    },

    async failTask(req, ctx) {
      const report = failureReport(namespaceOf(ctx), req.failure);
      await engine.progress.flushBefore(report.namespace, [report.taskId]);
      if ((await engine.dispatcher.fail(report)) === undefined) throw await engine.tasks.explainRejection(report);
      return {};
    },

    async heartbeat(req, ctx) {
      const namespace = namespaceOf(ctx);
      const workerId = requireName("worker_id", req.workerId);
      if (req.leases.length === 0 || req.leases.length > LIMITS.maxLeasesPerHeartbeat) {
        throw invalidArgument("leases", `has ${req.leases.length} leases; send 1 to ${LIMITS.maxLeasesPerHeartbeat}`);
      }
      const held = await engine.tasks.heartbeat(namespace, workerId, req.leases.map((l, i) => leaseRef(namespace, l, `leases[${i}]`)));
      const earliest = held.reduce<Date | undefined>((min, h) => (min === undefined || h.leaseExpiresAt < min ? h.leaseExpiresAt : min), undefined);
      return {
        held: held.map((h) => create(LeaseSchema, { taskId: h.taskId, attempt: h.attempt, leaseToken: h.leaseToken })),
        leaseExpiresAt: earliest === undefined ? undefined : timestampFromDate(earliest),
      };
    },

    async reportProgress(req, ctx) {
      const report = progressReport(namespaceOf(ctx), req.progress);
      // Not coalesced like the stream's: written now, so a stale lease is answered FAILED_PRECONDITION
      // and another namespace's task NOT_FOUND instead of being dropped unseen. The task's pending
      // stream progress is written first, so that it cannot overwrite this later.
      await engine.progress.flushBefore(report.namespace, [report.taskId]);
      await engine.tasks.progress(report);
      return {};
    },

    async saveCheckpoint(req, ctx) {
      const lease = leaseRef(namespaceOf(ctx), req.checkpoint, "checkpoint");
      await engine.tasks.checkpoint(lease, checkpointBytes(req.checkpoint));
      return {};
    },

    async releaseTask(req, ctx) {
      const report = releaseReport(namespaceOf(ctx), req.release);
      await engine.progress.flushBefore(report.namespace, [report.taskId]);
      if ((await engine.dispatcher.releaseTask(report)) === undefined) throw await engine.tasks.explainRejection(report);
      return {};
    },

    async listWorkers(req, ctx) {
      const namespace = namespaceOf(ctx);
      const size = pageSize("page_size", req.pageSize, limits);
      const fingerprint = filterFingerprint({ namespace, includeDisconnected: req.includeDisconnected });
      const afterId = req.pageToken === "" ? null : decodePageKey(req.pageToken, fingerprint, isNameKey);
      const rows = await engine.tasks.listWorkers({ namespace, includeDisconnected: req.includeDisconnected, afterId, limit: size + 1 });
      const page = rows.slice(0, size);
      const last = page.at(-1);
      return {
        workers: page.map((w) =>
          create(WorkerInfoSchema, {
            workerId: w.workerId,
            jobTypes: w.jobTypes,
            credits: w.credits,
            tasksInFlight: w.tasksInFlight,
            connectedAt: timestampFromDate(w.connectedAt),
            lastHeartbeatAt: timestampFromDate(w.lastSeenAt),
            connected: w.connected,
          }),
        ),
        nextPageToken: rows.length > size && last !== undefined ? encodePageToken(last.workerId, fingerprint) : "",
      };
    },
  };
}
