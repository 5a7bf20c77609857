/**
 * Runs one assignment's handler and turns whatever happens into data: the packed output, or the
 * failure to report. It never throws, so the worker decides what to report with one switch.
 */
import type { Any } from "@bufbuild/protobuf/wkt";
import type { Assignment } from "../gen/taskwire/v1/worker_pb.js";
import { decodeCheckpoint } from "./checkpoint.js";
import { isNonRetryableError, type Job, type JobContext } from "./define-job.js";
import { parentAccess } from "./parents.js";
import { packPayload, unpackPayload, type PayloadInit, type PayloadSchema } from "./payload.js";

/** The proto's bound on a failure's text (TaskFailure.error). */
const MAX_ERROR_CHARS = 10_000;

/** How an attempt ended, before the worker decides whether to report it. */
export type AttemptResult =
  | { kind: "completed"; output: Any | undefined }
  | { kind: "failed"; error: string; nonRetryable: boolean };

/** The parts of a JobContext that belong to the worker's bookkeeping of the attempt. */
export type AttemptControls = Pick<JobContext, "signal" | "progress" | "checkpoint">;

/** Unpacks the input and the previous checkpoint, runs the handler with `controls`, and packs its output. */
export async function runAssignment(job: Job | undefined, assignment: Assignment, controls: AttemptControls): Promise<AttemptResult> {
  if (job === undefined) {
    // The server only sends job types named in hello, so this is a server bug; retrying elsewhere may help.
    return { kind: "failed", error: `this worker has no handler for job type ${JSON.stringify(assignment.jobType)}`, nonRetryable: false };
  }
  let input;
  try {
    input = unpackPayload(job.input, assignment.input);
  } catch (error) {
    // The same bytes will not unpack on a retry either.
    return { kind: "failed", error: `input rejected: ${describe(error)}`, nonRetryable: true };
  }
  let previousCheckpoint;
  try {
    previousCheckpoint = decodeCheckpoint(assignment.checkpoint);
  } catch (error) {
    // Stored on the task, so every retry would get the same unreadable checkpoint.
    return { kind: "failed", error: `checkpoint rejected: ${describe(error)}`, nonRetryable: true };
  }
  const ctx: JobContext = {
    signal: controls.signal,
    taskId: assignment.taskId,
    attempt: assignment.attempt,
    maxAttempts: assignment.maxAttempts,
    jobType: assignment.jobType,
    previousCheckpoint,
    progress: controls.progress,
    checkpoint: controls.checkpoint,
    ...parentAccess(assignment.parents.map((p) => ({ taskId: p.taskId, jobType: p.jobType, output: p.output }))),
  };
  let output: PayloadInit<PayloadSchema> | void;
  try {
    output = await job.handler(input, ctx);
  } catch (error) {
    return { kind: "failed", error: describe(error), nonRetryable: isNonRetryableError(error) };
  }
  try {
    return { kind: "completed", output: output === undefined ? undefined : packPayload(job.output, output) };
  } catch (error) {
    return { kind: "failed", error: `output rejected: ${describe(error)}`, nonRetryable: false };
  }
}

/** An error as the one line a task's history shows. */
function describe(error: unknown): string {
  let text: string;
  if (error instanceof Error) {
    // "TypeError: x is undefined" says more than the message alone; a plain Error's name adds nothing.
    text = error.name === "Error" || error.name === "" ? error.message : `${error.name}: ${error.message}`;
  } else {
    text = String(error);
  }
  if (text === "") text = "handler failed without a message";
  return text.length > MAX_ERROR_CHARS ? `${text.slice(0, MAX_ERROR_CHARS - 1)}…` : text;
}
