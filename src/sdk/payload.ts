/**
 * Task payloads travel as google.protobuf.Any: a message of the job type's schema, or, for a
 * schemaless ("json") job type, a google.protobuf.Value. This module is the only place the SDK packs
 * or unpacks them, so a type mismatch is caught the same way on every path.
 */
import { create, fromJson, toJson, type DescMessage, type JsonValue, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { anyPack, anyUnpack, ListValueSchema, StructSchema, ValueSchema, type Any } from "@bufbuild/protobuf/wkt";

/** What a job's input or output is: a protobuf-es message schema, or "json" for schemaless JSON. */
export type PayloadSchema = DescMessage | "json";

/** The value a handler receives for a payload schema: the message, or plain JSON. */
export type PayloadOf<S extends PayloadSchema> = S extends DescMessage ? MessageShape<S> : JsonValue;

/** What a caller may pass for a payload schema: a message or its init object, or plain JSON. */
export type PayloadInit<S extends PayloadSchema> = S extends DescMessage ? MessageInitShape<S> : JsonValue;

/** Thrown when a payload is missing, of another type than the schema expects, or not valid JSON. */
export class PayloadError extends Error {
  override name = "PayloadError";
}

// Schemaless payloads are packed as Value, but other clients (any language, Connect/JSON) may send
// a Struct or ListValue, which the server accepts for schemaless job types too.
const JSON_SCHEMAS: ReadonlyMap<string, DescMessage> = new Map<string, DescMessage>([
  [ValueSchema.typeName, ValueSchema],
  [StructSchema.typeName, StructSchema],
  [ListValueSchema.typeName, ListValueSchema],
]);

/** The message name a job type registers for a payload schema; "" means schemaless JSON. */
export function payloadTypeName(schema: PayloadSchema): string {
  return schema === "json" ? "" : schema.typeName;
}

/** Packs a value into an Any: the message for a schema, a google.protobuf.Value for "json". */
export function packPayload<S extends PayloadSchema>(schema: S, value: PayloadInit<S>): Any {
  if (schema === "json") {
    let message;
    try {
      message = fromJson(ValueSchema, value as JsonValue);
    } catch (error) {
      throw new PayloadError(`payload is not JSON: ${messageOf(error)}`, { cause: error });
    }
    return anyPack(ValueSchema, message);
  }
  const desc = schema as DescMessage;
  // create() returns a message of the same type unchanged, and builds one from an init object.
  return anyPack(desc, create(desc, value as MessageInitShape<DescMessage>));
}

/** Unpacks an Any with a schema; throws PayloadError when it is missing or of another type. */
export function unpackPayload<S extends PayloadSchema>(schema: S, any: Any | undefined): PayloadOf<S> {
  if (any === undefined) throw new PayloadError("payload is missing");
  const typeName = any.typeUrl.slice(any.typeUrl.lastIndexOf("/") + 1);
  if (schema === "json") {
    const desc = JSON_SCHEMAS.get(typeName);
    if (desc === undefined) {
      throw new PayloadError(`payload is a ${typeName || "(no type URL)"}, expected JSON (google.protobuf.Value, Struct or ListValue)`);
    }
    return toJson(desc, decode(any, desc)) as PayloadOf<S>;
  }
  const desc = schema as DescMessage;
  if (typeName !== desc.typeName) {
    throw new PayloadError(`payload is a ${typeName || "(no type URL)"}, expected ${desc.typeName}`);
  }
  return decode(any, desc) as PayloadOf<S>;
}

function decode(any: Any, desc: DescMessage): MessageShape<DescMessage> {
  try {
    // The type name was checked above, so undefined cannot happen; the guard keeps the types honest.
    const message = anyUnpack(any, desc);
    if (message === undefined) throw new Error(`type URL ${any.typeUrl} does not name ${desc.typeName}`);
    return message;
  } catch (error) {
    throw new PayloadError(`payload does not decode as ${desc.typeName}: ${messageOf(error)}`, { cause: error });
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
