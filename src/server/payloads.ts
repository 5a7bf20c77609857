/**
 * Payload checks: a task's input (and a worker's output) must be the message its job type names,
 * or JSON (google.protobuf.Value / Struct / ListValue) for a schemaless job type. Job types that
 * registered descriptors get their payloads decoded as a stricter check, and their messages are
 * added to their namespace's registry that renders Any as JSON for Connect/JSON clients. Two
 * namespaces may define one message name differently: neither ever reads or writes the other's.
 */
import { create, createFileRegistry, createMutableRegistry, fromBinary, type DescMessage, type FileRegistry, type MutableRegistry, type Registry } from "@bufbuild/protobuf";
import { AnySchema, FileDescriptorSetSchema, ListValueSchema, StructSchema, ValueSchema, type Any, type ListValue, type Struct, type Value } from "@bufbuild/protobuf/wkt";
import { invalidArgument, TaskwireError } from "../core/errors.js";
import { LIMITS } from "../core/limits.js";
import type { JobTypeRecord, Payload } from "../core/task.js";
import type { Logger } from "pino";
import type { Db } from "../store/db.js";
import { jobTypeDescriptorsSince } from "../store/sql/job-type-descriptors-since.js";
import { requestNamespace } from "./request-namespace.js";

const JSON_SCHEMAS = new Map<string, DescMessage>([
  [ValueSchema.typeName, ValueSchema],
  [StructSchema.typeName, StructSchema],
  [ListValueSchema.typeName, ListValueSchema],
]);

/** A type URL: printable ASCII, a "/" before the message name, at most 2048 characters. */
const TYPE_URL = /^[\x21-\x7e]{0,2000}\/[A-Za-z_][A-Za-z0-9_.]{0,500}$/;

/** Throws INVALID_ARGUMENT unless the type URL is well-formed. */
export function checkTypeUrl(field: string, typeUrl: string): void {
  if (!TYPE_URL.test(typeUrl)) {
    throw invalidArgument(field, `has type URL ${JSON.stringify(typeUrl.slice(0, 200))}; expected "type.googleapis.com/<message name>"`);
  }
}

/** The message name of a type URL ("type.googleapis.com/acme.v1.Foo" -> "acme.v1.Foo"). */
export function typeNameOf(typeUrl: string): string {
  return typeUrl.slice(typeUrl.lastIndexOf("/") + 1);
}

/** Parses a serialized FileDescriptorSet and checks it defines the named messages. */
export function parseDescriptors(field: string, bytes: Uint8Array, messageNames: readonly string[]): FileRegistry {
  let registry: FileRegistry;
  try {
    registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, bytes));
  } catch (error) {
    throw invalidArgument(field, `is not a complete FileDescriptorSet (${(error as Error).message}); include every file the messages import`);
  }
  for (const name of messageNames) {
    if (name !== "" && registry.getMessage(name) === undefined) {
      throw invalidArgument(field, `does not define message ${name}`);
    }
  }
  return registry;
}

/** The payload limit of a job type: its own, capped by the server's. */
export function payloadLimitOf(jobType: Pick<JobTypeRecord, "maxPayloadBytes">, serverMaxBytes: number): number {
  return Math.min(jobType.maxPayloadBytes ?? serverMaxBytes, serverMaxBytes);
}

/**
 * Nesting depth of a JSON payload (Value, Struct, ListValue), walked without recursion. Deeper
 * payloads are refused: rendering them as JSON (and many clients parsing them) would recurse that deep.
 */
function jsonDepthExceeds(root: Value | Struct | ListValue, schema: DescMessage, max: number): boolean {
  type Node = { value: unknown; depth: number };
  const start = schema.typeName === StructSchema.typeName ? { kind: { case: "structValue", value: root } } : schema.typeName === ListValueSchema.typeName ? { kind: { case: "listValue", value: root } } : root;
  const stack: Node[] = [{ value: start, depth: 1 }];
  while (stack.length > 0) {
    const { value, depth } = stack.pop()!;
    if (depth > max) return true;
    const kind = (value as Value).kind;
    if (kind?.case === "structValue") for (const field of Object.values(kind.value.fields)) stack.push({ value: field, depth: depth + 1 });
    else if (kind?.case === "listValue") for (const item of kind.value.values) stack.push({ value: item, depth: depth + 1 });
  }
  return false;
}

/** Checks payloads against job types and keeps the registry used for JSON rendering. */
export class PayloadTypes {
  /** @param maxPayloadBytes the server's payload limit (--max-payload-bytes). */
  constructor(readonly maxPayloadBytes: number = LIMITS.maxPayloadBytes) {}

  /** Each namespace's messages that JSON can show inside Any; grows as job types with descriptors are seen. */
  private readonly jsonByNamespace = new Map<string, MutableRegistry>();
  private readonly byDescriptors = new WeakMap<Uint8Array, FileRegistry>();

  /**
   * The registry Connect reads and writes Any as JSON with: the JSON types, and the messages of the
   * namespace of the request being served (src/server/request-namespace.ts).
   */
  readonly jsonRegistry: Registry = namespaceScopedRegistry((typeName) => {
    const namespace = requestNamespace();
    return JSON_SCHEMAS.get(typeName) ?? (namespace === undefined ? undefined : this.jsonByNamespace.get(namespace)?.getMessage(typeName));
  });

  /** True when JSON can show a payload of this message in this namespace. */
  knowsJson(namespace: string, typeName: string): boolean {
    return JSON_SCHEMAS.has(typeName) || this.jsonByNamespace.get(namespace)?.getMessage(typeName) !== undefined;
  }

  /** The registry of a job type's descriptors, if it has any (cached per stored descriptor blob). */
  registryOf(jobType: JobTypeRecord): FileRegistry | undefined {
    return jobType.descriptors === null ? undefined : this.addDescriptors(jobType.namespace, jobType.descriptors);
  }

  /**
   * Parses a stored descriptor set and makes its messages renderable as JSON in its namespace. The
   * newest definition of a message replaces an older one (a job type re-registered with a new field).
   */
  addDescriptors(namespace: string, bytes: Uint8Array): FileRegistry {
    let registry = this.byDescriptors.get(bytes);
    if (registry === undefined) {
      registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, bytes));
      this.byDescriptors.set(bytes, registry);
      let json = this.jsonByNamespace.get(namespace);
      if (json === undefined) this.jsonByNamespace.set(namespace, (json = createMutableRegistry()));
      for (const type of registry) {
        if (type.kind !== "message" || JSON_SCHEMAS.has(type.typeName)) continue;
        const known = json.getMessage(type.typeName);
        if (known !== undefined) json.remove(known);
        json.add(type);
      }
    }
    return registry;
  }

  /**
   * Keeps the JSON registry in step with the database: loads every descriptor set now, then the
   * ones changed since, every `intervalMs`, so that JSON clients of any replica can read and
   * write typed payloads after a restart or a registration elsewhere.
   */
  async follow(db: Db, intervalMs: number, signal: AbortSignal, logger: Logger): Promise<void> {
    let since = new Date(0);
    const refresh = async () => {
      const { descriptors, newest } = await jobTypeDescriptorsSince(db, since);
      for (const { namespace, bytes } of descriptors) {
        try {
          this.addDescriptors(namespace, bytes);
        } catch (error) {
          logger.warn({ err: error }, "could not load a job type's descriptors");
        }
      }
      since = newest;
    };
    await refresh();
    const timer = setInterval(() => void refresh().catch((error: unknown) => logger.warn({ err: error }, "could not refresh job type descriptors")), intervalMs);
    timer.unref();
    signal.addEventListener("abort", () => clearInterval(timer), { once: true });
  }

  /**
   * Validates a payload for a job type: present (unless `optional`), within the size limit, of the
   * expected message type, and decodable when the type is known. Returns the domain payload.
   */
  check(field: string, any: Any | undefined, expectedType: string, jobType: JobTypeRecord, optional = false): Payload | null {
    if (any === undefined) {
      if (optional) return null;
      throw invalidArgument(field, expectedType === "" ? "is required: a google.protobuf.Value or Struct (JSON)" : `is required: a ${expectedType} message`);
    }
    const limit = payloadLimitOf(jobType, this.maxPayloadBytes);
    if (any.value.byteLength > limit) {
      const which = jobType.maxPayloadBytes !== null && jobType.maxPayloadBytes < this.maxPayloadBytes
        ? `job type ${JSON.stringify(jobType.name)}'s max_payload_bytes`
        : "the server's --max-payload-bytes";
      throw new TaskwireError("RESOURCE_EXHAUSTED", `${field}: is ${any.value.byteLength} bytes; the limit is ${limit} bytes (${which})`);
    }
    checkTypeUrl(field, any.typeUrl);
    const actual = typeNameOf(any.typeUrl);
    let schema: DescMessage | undefined;
    if (expectedType === "") {
      schema = JSON_SCHEMAS.get(actual);
      if (schema === undefined) {
        throw invalidArgument(field, `is a ${actual || "(no type URL)"} but job type ${JSON.stringify(jobType.name)} is schemaless: send a google.protobuf.Value or Struct (JSON)`);
      }
    } else {
      if (actual !== expectedType) {
        throw invalidArgument(field, `is a ${actual || "(no type URL)"} but job type ${JSON.stringify(jobType.name)} takes ${expectedType}`);
      }
      schema = this.registryOf(jobType)?.getMessage(expectedType);
    }
    if (schema !== undefined) {
      let decoded;
      try {
        decoded = fromBinary(schema, any.value);
      } catch (error) {
        // A RangeError here is a nesting deep enough to overflow the decoder's recursion.
        throw invalidArgument(field, `does not decode as ${schema.typeName}: ${error instanceof RangeError ? "nested too deeply" : (error as Error).message}`);
      }
      if (JSON_SCHEMAS.has(schema.typeName) && jsonDepthExceeds(decoded as Value, schema, LIMITS.maxJsonDepth)) {
        throw invalidArgument(field, `is JSON nested more than ${LIMITS.maxJsonDepth} levels deep; flatten it`);
      }
    }
    return { typeUrl: any.typeUrl, value: any.value };
  }
}

/** A domain payload as a protobuf Any. */
export function toAny(payload: Payload): Any {
  return create(AnySchema, { typeUrl: payload.typeUrl, value: payload.value });
}

/**
 * A registry that answers message lookups with `getMessage` (all that reading and writing Any as
 * JSON needs) and holds no other types.
 */
function namespaceScopedRegistry(getMessage: (typeName: string) => DescMessage | undefined): Registry {
  return {
    kind: "registry",
    *[Symbol.iterator]() {},
    get: getMessage,
    getMessage,
    getEnum: () => undefined,
    getExtension: () => undefined,
    getExtensionFor: () => undefined,
    getService: () => undefined,
  };
}
