/**
 * Runs in a Piscina worker thread: loads an inline module (once per thread), decodes the input from
 * the bytes it was handed (transferred, not copied), runs the handler, and hands back the encoded
 * output the same way. Errors are rethrown as plain Errors, with whether retrying can help.
 */
import { pathToFileURL } from "node:url";
import { create } from "@bufbuild/protobuf";
import { AnySchema } from "@bufbuild/protobuf/wkt";
import { move, transferableSymbol, valueSymbol } from "piscina";
import { isNonRetryableError } from "../sdk/define-job.js";
import { parentAccess } from "../sdk/parents.js";
import { packPayload, unpackPayload } from "../sdk/payload.js";
import { isInlineJob, type InlineJob } from "./define-inline-job.js";

/** What the pool sends for one attempt. */
export interface ThreadTask {
  /** Absolute path of the module. */
  file: string;
  jobType: string;
  taskId: string;
  attempt: number;
  typeUrl: string;
  /** The input's encoded value; its buffer was transferred to this thread. */
  value: Uint8Array;
  /** The task's dependencies and their outputs (copied; usually none). */
  parents: { taskId: string; jobType: string; output: { typeUrl: string; value: Uint8Array } | null }[];
}

const modules = new Map<string, Promise<InlineJob>>();

async function load(file: string): Promise<InlineJob> {
  const mod = (await import(pathToFileURL(file).href)) as { default?: unknown };
  if (!isInlineJob(mod.default)) throw new Error(`${file} has no default export made by defineInlineJob()`);
  return mod.default;
}

/** What a thread hands back: the output's type and encoded value (its buffer transferred), or null. */
export type ThreadOutput = { typeUrl: string; value: Uint8Array } | null;

/** Wraps the output so Piscina transfers its buffer instead of copying it. */
function transferred(typeUrl: string, value: Uint8Array): ThreadOutput {
  // A Transferable (the buffer to move, the value to send) that move() marks for Piscina.
  return move({ [transferableSymbol]: value.buffer, [valueSymbol]: { typeUrl, value } } as never) as unknown as ThreadOutput;
}

/** Runs one attempt; resolves with the output, encoded once, its bytes moved to the caller. */
export default async function runInlineTask(task: ThreadTask): Promise<ThreadOutput> {
  let loading = modules.get(task.file);
  if (loading === undefined) {
    loading = load(task.file);
    modules.set(task.file, loading);
    loading.catch(() => modules.delete(task.file));
  }
  const job = await loading;
  if (job.name !== task.jobType) throw new Error(`${task.file} defines job type "${job.name}", not "${task.jobType}"`);
  try {
    const input = unpackPayload(job.input, create(AnySchema, { typeUrl: task.typeUrl, value: task.value }));
    const parents = parentAccess(
      task.parents.map((p) => ({ taskId: p.taskId, jobType: p.jobType, output: p.output === null ? undefined : create(AnySchema, p.output) })),
    );
    const output = await job.handler(input as never, { taskId: task.taskId, attempt: task.attempt, ...parents });
    if (output === undefined) return null;
    const packed = packPayload(job.output, output as never);
    // The encoded value owns its buffer (a fresh encoding), so transferring it detaches nothing else.
    const value = packed.value.byteOffset === 0 && packed.value.byteLength === packed.value.buffer.byteLength ? packed.value : new Uint8Array(packed.value);
    return transferred(packed.typeUrl, value);
  } catch (error) {
    // Structured clone keeps only plain Error fields: carry "non-retryable" in the message's prefix.
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(isNonRetryableError(error) ? `${NON_RETRYABLE}${message}` : message);
  }
}

/** Marks an error that retrying cannot help, across the thread boundary. */
export const NON_RETRYABLE = "[non-retryable] ";
