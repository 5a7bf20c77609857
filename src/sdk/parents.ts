/**
 * What a task's dependencies produced, for its handler: the list the server sent with the
 * assignment, and typed access by job definition. Shared by remote workers (JobContext) and
 * inline jobs (InlineContext).
 */
import type { Any } from "@bufbuild/protobuf/wkt";
import type { JobRef } from "./define-job.js";
import { unpackPayload, type PayloadOf, type PayloadSchema } from "./payload.js";

/** One dependency of the running task: it SUCCEEDED, with this output (undefined: it produced none). */
export interface ParentResult {
  readonly taskId: string;
  readonly jobType: string;
  readonly output: Any | undefined;
}

/** Typed access to a task's parents. */
export interface ParentAccess {
  /** The tasks this one depends on (TaskSpec.depends_on), by ascending id; empty for a task without dependencies. */
  readonly parents: readonly ParentResult[];
  /**
   * The outputs of the parents of `job`'s job type, unpacked with its output schema, by ascending
   * id (undefined for one that produced none). Throws a PayloadError for an output of another type.
   */
  parentOutputs<O extends PayloadSchema>(job: JobRef<PayloadSchema, O>): { taskId: string; output: PayloadOf<O> | undefined }[];
  /** The output of the one parent of `job`'s job type; throws unless there is exactly one. */
  parentOutput<O extends PayloadSchema>(job: JobRef<PayloadSchema, O>): PayloadOf<O> | undefined;
}

/** ParentAccess over the parents of one assignment. */
export function parentAccess(parents: readonly ParentResult[]): ParentAccess {
  const frozen = Object.freeze(parents.map((p) => Object.freeze({ taskId: p.taskId, jobType: p.jobType, output: p.output })));
  const outputs = <O extends PayloadSchema>(job: JobRef<PayloadSchema, O>) =>
    frozen
      .filter((p) => p.jobType === job.name)
      .map((p) => ({ taskId: p.taskId, output: p.output === undefined ? undefined : unpackPayload(job.output, p.output) }));
  return {
    parents: frozen,
    parentOutputs: outputs,
    parentOutput(job) {
      const found = outputs(job);
      if (found.length !== 1) {
        throw new Error(`this task has ${found.length} dependencies of job type ${JSON.stringify(job.name)}, not exactly one; use parentOutputs()`);
      }
      return found[0]!.output;
    },
  };
}
