/**
 * Checkpoints travel as taskwire.v1.Checkpoint: raw bytes, or JSON as a google.protobuf.Value. This
 * module is the only place the SDK converts between them and what handlers see.
 */
import { create, fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { CheckpointSchema, type Checkpoint } from "../gen/taskwire/v1/task_pb.js";
import { PayloadError } from "./payload.js";

/** What a handler saves and the next attempt gets back: bytes, or any JSON value. */
export type CheckpointData = Uint8Array | JsonValue;

/** Packs checkpoint data; throws PayloadError for a value that is not JSON. */
export function encodeCheckpoint(data: CheckpointData): Checkpoint {
  if (data instanceof Uint8Array) {
    // Copied: the checkpoint may be re-sent after a reconnect, long after the caller reused its buffer.
    return create(CheckpointSchema, { data: { case: "binary", value: data.slice() } });
  }
  try {
    return create(CheckpointSchema, { data: { case: "json", value: fromJson(ValueSchema, data) } });
  } catch (error) {
    throw new PayloadError(`checkpoint is neither bytes nor JSON: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
}

/** Unpacks an assignment's checkpoint; undefined when no earlier attempt saved one. */
export function decodeCheckpoint(checkpoint: Checkpoint | undefined): CheckpointData | undefined {
  switch (checkpoint?.data.case) {
    case "binary":
      return checkpoint.data.value;
    case "json":
      return toJson(ValueSchema, checkpoint.data.value);
    default:
      return undefined;
  }
}
