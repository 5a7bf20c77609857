/** Builds task payloads for tests. */
import { fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { anyPack, anyUnpack, ValueSchema, type Any } from "@bufbuild/protobuf/wkt";

/** A JSON value packed as google.protobuf.Any(Value), the schemaless payload. */
export function jsonAny(value: JsonValue): Any {
  return anyPack(ValueSchema, fromJson(ValueSchema, value));
}

/** The JSON value inside an Any(Value). */
export function anyJson(any: Any | undefined): JsonValue | undefined {
  if (any === undefined) return undefined;
  const value = anyUnpack(any, ValueSchema);
  return value === undefined ? undefined : toJson(ValueSchema, value);
}
