/**
 * The canonical form of a task payload, and its SHA-256: the key of dedup_by_payload. Total: every
 * payload hashes, the same way every time, and never throws. Equal values get equal keys whatever
 * their encoding:
 * - JSON (google.protobuf.Value, Struct, ListValue): the JSON value, objects by key in UTF-16 code
 *   unit order (as RFC 8785 sorts them); a Struct and a Value holding that Struct are the same
 *   value. Numbers are IEEE doubles: -0 equals 0, every NaN equals every other NaN, and infinities
 *   are themselves (a binary client can send them).
 * - A message whose type the job type registered: its fields by number, map entries by key, unset
 *   fields omitted (so an explicit zero of an implicit-presence field equals no field), 64-bit
 *   integers exactly, nested Any resolved the same way; unknown fields in wire order per number.
 * - Anything else (a type the server has no descriptor for, bytes that do not decode, nesting
 *   deeper than MAX_DEPTH): the type name and the bytes as sent, so only identical encodings match.
 * The host part of a type URL is not part of the identity. Pure: no I/O.
 *
 * The contract: the key is a function of the payload and the registry passed (the job type's
 * registered descriptors). It cannot be a function of the payload alone: without a schema a map
 * cannot be told from a repeated field whose order matters, nor a default value from a set one,
 * and canonicalising those is what lets equal messages from encoders with random map order match.
 * So registering a job type's descriptors (or changing them) can change the key of the same bytes;
 * README and the proto say so.
 */
import { createHash } from "node:crypto";
import { fromBinary, ScalarType, type DescField, type DescMessage, type Registry } from "@bufbuild/protobuf";
import { reflect, type ReflectMessage } from "@bufbuild/protobuf/reflect";
import { ListValueSchema, StructSchema, ValueSchema, type ListValue, type Struct, type Value } from "@bufbuild/protobuf/wkt";
import type { Payload } from "./task.js";

/** Prefix of keys derived from payloads; clients may not choose keys that start with it. */
export const PAYLOAD_KEY_PREFIX = "payload-sha256:";

/** Nesting deeper than this is hashed as the raw bytes. */
export const MAX_DEPTH = 100;

/** Bumped if the canonical form ever changes, so old and new keys never collide by accident. */
const FORMAT = "taskwire-canonical-1";

const JSON_TYPES = new Set<string>([ValueSchema.typeName, StructSchema.typeName, ListValueSchema.typeName]);
const ANY_TYPE = "google.protobuf.Any";

class TooDeep extends Error {}

/** An append-only byte sink with the few token shapes the canonical form uses. */
class Sink {
  private readonly chunks: Uint8Array[] = [];
  private size = 0;

  tag(letter: string): void {
    this.push(Uint8Array.of(letter.charCodeAt(0)));
  }

  uint32(n: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, n);
    this.push(b);
  }

  bytes(value: Uint8Array): void {
    this.uint32(value.byteLength);
    this.push(value);
  }

  /** UTF-16 code units, so that every JS string (lone surrogates included) has its own encoding. */
  string(value: string): void {
    const b = new Uint8Array(value.length * 2);
    const view = new DataView(b.buffer);
    for (let i = 0; i < value.length; i++) view.setUint16(i * 2, value.charCodeAt(i));
    this.bytes(b);
  }

  double(value: number): void {
    const b = new Uint8Array(8);
    const view = new DataView(b.buffer);
    if (Number.isNaN(value)) view.setUint32(0, 0x7ff80000); // the one canonical NaN
    else view.setFloat64(0, value === 0 ? 0 : value); // -0 becomes 0
    this.push(b);
  }

  private push(b: Uint8Array): void {
    this.chunks.push(b);
    this.size += b.byteLength;
  }

  result(): Uint8Array {
    const out = new Uint8Array(this.size);
    let offset = 0;
    for (const chunk of this.chunks) {
      out.set(chunk, offset);
      offset += chunk.byteLength;
    }
    return out;
  }
}

/** The message name of a type URL ("type.googleapis.com/acme.v1.Foo" -> "acme.v1.Foo"). */
function typeNameOf(typeUrl: string): string {
  return typeUrl.slice(typeUrl.lastIndexOf("/") + 1);
}

/** The schema of a payload's type: the JSON types always, others only from the registry. */
function schemaOf(typeName: string, registry: Registry | undefined): DescMessage | undefined {
  if (typeName === ValueSchema.typeName) return ValueSchema;
  if (typeName === StructSchema.typeName) return StructSchema;
  if (typeName === ListValueSchema.typeName) return ListValueSchema;
  return registry?.getMessage(typeName);
}

/** The canonical bytes of a payload (see the module comment). */
export function canonicalPayload(payload: Payload, registry?: Registry): Uint8Array {
  const sink = new Sink();
  sink.string(FORMAT);
  writePayload(sink, payload, registry, 0);
  return sink.result();
}

/** The payload's dedup key: PAYLOAD_KEY_PREFIX and the hex SHA-256 of its canonical bytes. */
export function payloadKey(payload: Payload, registry?: Registry): string {
  return PAYLOAD_KEY_PREFIX + createHash("sha256").update(canonicalPayload(payload, registry)).digest("hex");
}

/** A typed payload (top level or a nested Any): decoded and canonical when its type is known, else raw. */
function writePayload(sink: Sink, payload: Payload, registry: Registry | undefined, depth: number): void {
  const typeName = typeNameOf(payload.typeUrl);
  const schema = schemaOf(typeName, registry);
  if (schema !== undefined) {
    // Built apart, so that a payload that cannot be canonicalised leaves no partial tokens behind.
    const inner = new Sink();
    try {
      const message = fromBinary(schema, payload.value, { readUnknownFields: true });
      if (JSON_TYPES.has(typeName)) {
        inner.tag("J");
        writeJsonMessage(inner, schema, message, depth);
      } else {
        inner.tag("M");
        inner.string(typeName);
        writeMessage(inner, reflect(schema, message), registry, depth);
      }
      sink.bytes(inner.result());
      return;
    } catch {
      // Undecodable bytes, or nesting past MAX_DEPTH: the raw form below, the same for the same
      // bytes every time (canonicalising is pure, so the same bytes always fail the same way).
    }
  }
  const raw = new Sink();
  raw.tag("R");
  raw.string(typeName);
  raw.bytes(payload.value);
  sink.bytes(raw.result());
}

/** A Value, Struct or ListValue message as the JSON value it stands for. */
function writeJsonMessage(sink: Sink, schema: DescMessage, message: unknown, depth: number): void {
  if (schema.typeName === StructSchema.typeName) writeStruct(sink, message as Struct, depth);
  else if (schema.typeName === ListValueSchema.typeName) writeList(sink, message as ListValue, depth);
  else writeValue(sink, message as Value, depth);
}

function writeValue(sink: Sink, value: Value, depth: number): void {
  if (depth > MAX_DEPTH) throw new TooDeep();
  const kind = value.kind;
  switch (kind.case) {
    case "nullValue":
      sink.tag("n");
      return;
    case "numberValue":
      sink.tag("d");
      sink.double(kind.value);
      return;
    case "stringValue":
      sink.tag("s");
      sink.string(kind.value);
      return;
    case "boolValue":
      sink.tag(kind.value ? "t" : "f");
      return;
    case "structValue":
      writeStruct(sink, kind.value, depth + 1);
      return;
    case "listValue":
      writeList(sink, kind.value, depth + 1);
      return;
    default:
      // A Value with no kind set (only a binary client can send one): distinct from null.
      sink.tag("u");
  }
}

function writeStruct(sink: Sink, struct: Struct, depth: number): void {
  if (depth > MAX_DEPTH) throw new TooDeep();
  // Default string comparison is by UTF-16 code units.
  const keys = Object.keys(struct.fields).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  sink.tag("o");
  sink.uint32(keys.length);
  for (const key of keys) {
    sink.string(key);
    writeValue(sink, struct.fields[key]!, depth + 1);
  }
}

function writeList(sink: Sink, list: ListValue, depth: number): void {
  if (depth > MAX_DEPTH) throw new TooDeep();
  sink.tag("l");
  sink.uint32(list.values.length);
  for (const value of list.values) writeValue(sink, value, depth + 1);
}

/** A message: set fields by number, then unknown fields. */
function writeMessage(sink: Sink, message: ReflectMessage, registry: Registry | undefined, depth: number): void {
  if (depth > MAX_DEPTH) throw new TooDeep();
  const fields = message.sortedFields.filter((field: DescField) => message.isSet(field) && !isImplicitZero(message, field));
  sink.uint32(fields.length);
  for (const field of fields) {
    sink.uint32(field.number);
    writeField(sink, message, field, registry, depth);
  }
  // Unknown fields keep their order within one field number (a repeated field's order matters).
  const unknown = [...(message.getUnknown() ?? [])].sort((a, b) => a.no - b.no);
  sink.uint32(unknown.length);
  for (const u of unknown) {
    sink.uint32(u.no);
    sink.uint32(u.wireType);
    sink.bytes(u.data);
  }
}

/** An implicit-presence scalar holding -0: protobuf-es may count it as set, but it equals 0. */
function isImplicitZero(message: ReflectMessage, field: DescField): boolean {
  if (field.fieldKind !== "scalar" || field.presence !== 2 /* IMPLICIT */) return false;
  const value = message.get(field);
  return value === 0;
}

function writeField(sink: Sink, message: ReflectMessage, field: DescField, registry: Registry | undefined, depth: number): void {
  switch (field.fieldKind) {
    case "scalar":
      writeScalar(sink, field.scalar, message.get(field));
      return;
    case "enum":
      sink.tag("e");
      sink.string(String(message.get(field)));
      return;
    case "message":
      writeNested(sink, field.message, message.get(field), registry, depth + 1);
      return;
    case "list": {
      const list = message.get(field);
      sink.tag("l");
      sink.uint32(list.size);
      for (const item of list) writeElement(sink, field, item, registry, depth + 1);
      return;
    }
    case "map": {
      const map = message.get(field);
      // Entries sorted by the canonical bytes of their keys.
      const entries = [...map.entries()].map(([key, value]) => {
        const k = new Sink();
        writeScalar(k, field.mapKey, key);
        return { key: k.result(), value };
      });
      entries.sort((a, b) => compareBytes(a.key, b.key));
      sink.tag("p");
      sink.uint32(entries.length);
      for (const entry of entries) {
        sink.bytes(entry.key);
        writeElement(sink, field, entry.value, registry, depth + 1);
      }
      return;
    }
  }
}

/** A list element or map value. */
function writeElement(sink: Sink, field: DescField & { fieldKind: "list" | "map" }, value: unknown, registry: Registry | undefined, depth: number): void {
  const kind = field.fieldKind === "list" ? field.listKind : field.mapKind;
  if (kind === "message") {
    writeNested(sink, field.message!, value as ReflectMessage, registry, depth);
  } else if (kind === "enum") {
    sink.tag("e");
    sink.string(String(value));
  } else {
    writeScalar(sink, field.scalar!, value);
  }
}

/** A nested message: Any and the JSON types get their own canonical forms. */
function writeNested(sink: Sink, schema: DescMessage, message: ReflectMessage, registry: Registry | undefined, depth: number): void {
  if (depth > MAX_DEPTH) throw new TooDeep();
  if (schema.typeName === ANY_TYPE) {
    const any = message.message as unknown as { typeUrl: string; value: Uint8Array };
    sink.tag("A");
    writePayload(sink, { typeUrl: any.typeUrl, value: any.value }, registry, depth);
  } else if (JSON_TYPES.has(schema.typeName)) {
    sink.tag("J");
    writeJsonMessage(sink, schema, message.message, depth);
  } else {
    sink.tag("m");
    writeMessage(sink, message, registry, depth);
  }
}

function writeScalar(sink: Sink, type: ScalarType, value: unknown): void {
  switch (type) {
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      sink.tag("d");
      sink.double(value as number);
      return;
    case ScalarType.BOOL:
      sink.tag(value === true ? "t" : "f");
      return;
    case ScalarType.STRING:
      sink.tag("s");
      sink.string(value as string);
      return;
    case ScalarType.BYTES:
      sink.tag("b");
      sink.bytes(value as Uint8Array);
      return;
    default:
      // Every integer type, exactly: bigint, number, or a decimal string (jstype = JS_STRING).
      sink.tag("i");
      sink.string(String(value));
  }
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.byteLength, b.byteLength);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.byteLength - b.byteLength;
}
