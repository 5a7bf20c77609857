/** The canonical payload form behind dedup_by_payload: total, deterministic, blind to encoding choices, and sensitive to values. */
import { create, createFileRegistry, createRegistry, fromJson, toBinary, type JsonValue } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import {
  anyPack,
  BytesValueSchema,
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FileDescriptorSetSchema,
  Int64ValueSchema,
  ListValueSchema,
  OptionSchema,
  StringValueSchema,
  StructSchema,
  ValueSchema,
  type Value,
} from "@bufbuild/protobuf/wkt";
import fc from "fast-check";
import t from "tap";
import { canonicalPayload, MAX_DEPTH, PAYLOAD_KEY_PREFIX, payloadKey } from "../../src/core/payload-hash.js";
import type { Payload } from "../../src/core/task.js";

const VALUE_URL = "type.googleapis.com/google.protobuf.Value";
const STRUCT_URL = "type.googleapis.com/google.protobuf.Struct";

/** A JSON value as an Any(Value) payload, encoded by protobuf-es (map entries in insertion order). */
const jsonPayload = (value: JsonValue): Payload => ({ typeUrl: VALUE_URL, value: toBinary(ValueSchema, fromJson(ValueSchema, value)) });
/** A Value payload from raw wire bytes. */
const valueBytes = (write: (w: BinaryWriter) => void): Payload => {
  const w = new BinaryWriter();
  write(w);
  return { typeUrl: VALUE_URL, value: w.finish() };
};
/** A Value holding a double with these exact 64 bits (big-endian hex). */
const doubleBits = (hex: string): Payload =>
  valueBytes((w) => {
    const bytes = Buffer.from(hex, "hex").reverse(); // fixed64 is little-endian on the wire
    w.tag(2, WireType.Bit64).raw(bytes);
  });

t.test("keys look like payload-sha256:<64 hex>, and the same payload always gets the same key", async (t) => {
  const key = payloadKey(jsonPayload({ a: 1 }));
  t.match(key, new RegExp(`^${PAYLOAD_KEY_PREFIX}[0-9a-f]{64}$`));
  t.equal(payloadKey(jsonPayload({ a: 1 })), key);
});

t.test("JSON: object key order, Struct vs Value(Struct), and encoding details do not matter", async (t) => {
  const ab = jsonPayload({ a: 1, b: [true, null, "x"] });
  const ba = jsonPayload({ b: [true, null, "x"], a: 1 });
  t.not(Buffer.from(ab.value).toString("hex"), Buffer.from(ba.value).toString("hex"), "the encodings differ");
  t.equal(payloadKey(ab), payloadKey(ba), "key order does not matter");
  const struct: Payload = { typeUrl: STRUCT_URL, value: toBinary(StructSchema, fromJson(StructSchema, { b: [true, null, "x"], a: 1 })) };
  t.equal(payloadKey(struct), payloadKey(ab), "a Struct equals a Value holding the same object");
  const list: Payload = { typeUrl: "type.googleapis.com/google.protobuf.ListValue", value: toBinary(ListValueSchema, fromJson(ListValueSchema, [1, 2])) };
  t.equal(payloadKey(list), payloadKey(jsonPayload([1, 2])), "a ListValue equals a Value holding the same list");
  t.equal(payloadKey({ ...ab, typeUrl: "example.com/x/google.protobuf.Value" }), payloadKey(ab), "the type URL's host is not part of the identity");
  // An explicit default field on the wire (number_value = 0 written out) decodes to the same value.
  t.equal(payloadKey(valueBytes((w) => w.tag(2, WireType.Bit64).double(0))), payloadKey(jsonPayload(0)));
});

t.test("numbers: -0 equals 0, all NaNs are equal, infinities and huge values are themselves", async (t) => {
  t.equal(payloadKey(doubleBits("8000000000000000")), payloadKey(jsonPayload(0)), "-0 = 0");
  const nan1 = payloadKey(doubleBits("7ff8000000000000"));
  t.equal(payloadKey(doubleBits("7ff0000000000001")), nan1, "a signalling NaN = the quiet NaN");
  t.equal(payloadKey(doubleBits("fff8000000000001")), nan1, "a negative NaN with payload = the quiet NaN");
  const inf = payloadKey(doubleBits("7ff0000000000000"));
  const negInf = payloadKey(doubleBits("fff0000000000000"));
  t.equal(new Set([nan1, inf, negInf, payloadKey(jsonPayload(Number.MAX_VALUE))]).size, 4, "NaN, +inf, -inf and the largest double all differ");
  t.not(payloadKey(jsonPayload(2 ** 53)), payloadKey(jsonPayload(2 ** 53 + 2)), "large integers keep their exact double value");
  t.not(payloadKey(jsonPayload(1)), payloadKey(jsonPayload("1")), "a number is not its string");
  t.not(payloadKey(jsonPayload(5e-324)), payloadKey(jsonPayload(0)), "the smallest subnormal is not 0");
});

t.test("JSON values of different shapes never collide", async (t) => {
  const values: JsonValue[] = [null, true, false, 0, "", [], {}, [null], { "": null }, "null", ["a", "b"], ["ab"], { a: "b" }, { ab: "" }, [[]], [{}]];
  const keys = values.map((v) => payloadKey(jsonPayload(v)));
  t.equal(new Set(keys).size, values.length);
  t.not(payloadKey(valueBytes(() => {})), payloadKey(jsonPayload(null)), "a Value with no kind (binary only) is not null");
  // Strings compare by UTF-16 code units: a lone surrogate is not its replacement character.
  t.not(canonicalPayload(jsonPayload("\uFFFD")).toString(), canonicalPayload(jsonPayload("\uD800x")).toString());
});

t.test("registered message types: field order, 64-bit integers, bytes, unknown fields", async (t) => {
  const registry = createRegistry(StringValueSchema, Int64ValueSchema, BytesValueSchema, OptionSchema, StructSchema, ValueSchema);
  const int64 = (v: bigint): Payload => ({ typeUrl: "type.googleapis.com/google.protobuf.Int64Value", value: toBinary(Int64ValueSchema, create(Int64ValueSchema, { value: v })) });
  t.not(payloadKey(int64(9_223_372_036_854_775_807n), registry), payloadKey(int64(9_223_372_036_854_775_806n), registry), "int64 max and max-1 differ (no double rounding)");
  t.equal(payloadKey(int64(-1n), registry), payloadKey(int64(-1n), registry));
  const bytes = (b: number[]): Payload => ({ typeUrl: "type.googleapis.com/google.protobuf.BytesValue", value: toBinary(BytesValueSchema, create(BytesValueSchema, { value: Uint8Array.from(b) })) });
  t.not(payloadKey(bytes([0, 1]), registry), payloadKey(bytes([1, 0]), registry));
  t.not(payloadKey(bytes([]), registry), payloadKey(bytes([0]), registry), "empty bytes are not a zero byte");

  // google.protobuf.Option {name = 1; value = 2 (Any)} written in both field orders.
  const inner = anyPack(StructSchema, fromJson(StructSchema, { x: 1, y: 2 }));
  const innerSwapped = { ...inner, value: toBinary(StructSchema, fromJson(StructSchema, { y: 2, x: 1 })) };
  const option = (order: "name-first" | "value-first", any: { typeUrl: string; value: Uint8Array }): Payload => {
    const w = new BinaryWriter();
    const writeName = () => w.tag(1, WireType.LengthDelimited).string("opt");
    const writeValue = () => w.tag(2, WireType.LengthDelimited).bytes(new BinaryWriter().tag(1, WireType.LengthDelimited).string(any.typeUrl).tag(2, WireType.LengthDelimited).bytes(any.value).finish());
    if (order === "name-first") { writeName(); writeValue(); } else { writeValue(); writeName(); }
    return { typeUrl: "type.googleapis.com/google.protobuf.Option", value: w.finish() };
  };
  const a = option("name-first", inner);
  const b = option("value-first", innerSwapped);
  t.equal(payloadKey(a, registry), payloadKey(b, registry), "field order and a nested Any's key order do not matter");
  t.not(payloadKey(a), payloadKey(b), "without the descriptor only identical bytes match");
  t.equal(payloadKey(a), payloadKey(option("name-first", inner)), "without the descriptor identical bytes still match");

  // Unknown fields are part of the value; their order across field numbers is not.
  const withUnknown = (numbers: number[]): Payload => {
    const w = new BinaryWriter().tag(1, WireType.LengthDelimited).string("v");
    for (const n of numbers) w.tag(n, WireType.Varint).uint32(n);
    return { typeUrl: "type.googleapis.com/google.protobuf.StringValue", value: w.finish() };
  };
  t.not(payloadKey(withUnknown([7]), registry), payloadKey(withUnknown([]), registry), "an unknown field changes the key");
  t.equal(payloadKey(withUnknown([7, 9]), registry), payloadKey(withUnknown([9, 7]), registry), "unknown fields of different numbers in either order");
});

/** A registry with one hand-written message: map<string, int32> m = 1; optional double d = 2; repeated sint64 r = 3; uint64 u = 4 (jstype string). */
const custom = (() => {
  const set = create(FileDescriptorSetSchema, {
    file: [
      {
        name: "test/custom.proto",
        package: "test",
        syntax: "proto3",
        messageType: [
          {
            name: "Custom",
            field: [
              { name: "m", number: 1, label: FieldDescriptorProto_Label.REPEATED, type: FieldDescriptorProto_Type.MESSAGE, typeName: ".test.Custom.MEntry", jsonName: "m" },
              { name: "d", number: 2, label: FieldDescriptorProto_Label.OPTIONAL, type: FieldDescriptorProto_Type.DOUBLE, proto3Optional: true, oneofIndex: 0, jsonName: "d" },
              { name: "r", number: 3, label: FieldDescriptorProto_Label.REPEATED, type: FieldDescriptorProto_Type.SINT64, jsonName: "r" },
              { name: "u", number: 4, label: FieldDescriptorProto_Label.OPTIONAL, type: FieldDescriptorProto_Type.UINT64, jsonName: "u", options: { jstype: 1 } },
              { name: "f", number: 5, label: FieldDescriptorProto_Label.OPTIONAL, type: FieldDescriptorProto_Type.DOUBLE, jsonName: "f" },
            ],
            nestedType: [
              {
                name: "MEntry",
                field: [
                  { name: "key", number: 1, label: FieldDescriptorProto_Label.OPTIONAL, type: FieldDescriptorProto_Type.STRING, jsonName: "key" },
                  { name: "value", number: 2, label: FieldDescriptorProto_Label.OPTIONAL, type: FieldDescriptorProto_Type.INT32, jsonName: "value" },
                ],
                options: { mapEntry: true },
              },
            ],
            oneofDecl: [{ name: "_d" }],
          },
        ],
      },
    ],
  });
  return createFileRegistry(set);
})();
const CUSTOM_URL = "type.googleapis.com/test.Custom";
const customBytes = (write: (w: BinaryWriter) => void): Payload => {
  const w = new BinaryWriter();
  write(w);
  return { typeUrl: CUSTOM_URL, value: w.finish() };
};
const entry = (w: BinaryWriter, key: string, value: number) =>
  w.tag(1, WireType.LengthDelimited).bytes(new BinaryWriter().tag(1, WireType.LengthDelimited).string(key).tag(2, WireType.Varint).int32(value).finish());

t.test("a registered message with a map, explicit presence, repeated sint64 and uint64-as-string", async (t) => {
  t.ok(custom.getMessage("test.Custom"), "the hand-written descriptor loads");
  const m12 = customBytes((w) => { entry(w, "one", 1); entry(w, "two", 2); });
  const m21 = customBytes((w) => { entry(w, "two", 2); entry(w, "one", 1); });
  t.equal(payloadKey(m12, custom), payloadKey(m21, custom), "map entry order does not matter");
  t.not(payloadKey(m12, custom), payloadKey(customBytes((w) => { entry(w, "one", 1); entry(w, "two", 3); }), custom), "map values matter");
  const explicitZero = customBytes((w) => w.tag(2, WireType.Bit64).double(0));
  const empty = customBytes(() => {});
  t.not(payloadKey(explicitZero, custom), payloadKey(empty, custom), "an optional field set to 0 is not an unset one");
  t.equal(payloadKey(customBytes((w) => w.tag(2, WireType.Bit64).double(-0)), custom), payloadKey(explicitZero, custom), "optional -0 = optional 0");
  t.equal(payloadKey(customBytes((w) => w.tag(5, WireType.Bit64).double(-0)), custom), payloadKey(empty, custom), "implicit -0 = absent (0)");
  const r = (values: bigint[]) => customBytes((w) => { for (const v of values) w.tag(3, WireType.Varint).sint64(v); });
  t.not(payloadKey(r([1n, 2n]), custom), payloadKey(r([2n, 1n]), custom), "repeated order matters");
  t.not(payloadKey(r([-9_223_372_036_854_775_808n]), custom), payloadKey(r([-9_223_372_036_854_775_807n]), custom), "sint64 extremes are exact");
  const u = (v: bigint) => customBytes((w) => w.tag(4, WireType.Varint).uint64(v));
  t.not(payloadKey(u(18_446_744_073_709_551_615n), custom), payloadKey(u(18_446_744_073_709_551_614n), custom), "uint64 max as a JS string is exact");
});

t.test("totality: undecodable bytes, unknown types and very deep nesting all hash, the same way every time", async (t) => {
  const garbage: Payload = { typeUrl: VALUE_URL, value: Uint8Array.of(0xff, 0xff, 0xff) };
  t.equal(payloadKey(garbage), payloadKey(garbage), "bytes that do not decode hash as raw bytes");
  t.not(payloadKey(garbage), payloadKey({ typeUrl: "type.googleapis.com/acme.Unknown", value: garbage.value }), "the type name is part of the raw identity");
  let deep: Value = fromJson(ValueSchema, 1);
  for (let i = 0; i < MAX_DEPTH + 20; i++) deep = create(ValueSchema, { kind: { case: "listValue", value: { values: [deep] } } });
  const deepPayload: Payload = { typeUrl: VALUE_URL, value: toBinary(ValueSchema, deep) };
  t.equal(payloadKey(deepPayload), payloadKey(deepPayload), "nesting past the limit hashes (as raw bytes)");
  t.not(payloadKey(deepPayload), payloadKey(jsonPayload([1])));

  const registry = createRegistry(StringValueSchema, OptionSchema);
  const typeUrls = [VALUE_URL, STRUCT_URL, "type.googleapis.com/google.protobuf.ListValue", "type.googleapis.com/google.protobuf.StringValue", "type.googleapis.com/google.protobuf.Option", CUSTOM_URL, "x/acme.Nope", ""];
  fc.assert(
    fc.property(fc.constantFrom(...typeUrls), fc.uint8Array({ maxLength: 200 }), (typeUrl, value) => {
      const payload = { typeUrl, value };
      const first = payloadKey(payload, registry);
      return first === payloadKey(payload, registry) && first === payloadKey({ typeUrl, value: Uint8Array.from(value) }, registry);
    }),
    { numRuns: 2_000 },
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (value) => payloadKey({ typeUrl: CUSTOM_URL, value }, custom) === payloadKey({ typeUrl: CUSTOM_URL, value }, custom)),
    { numRuns: 1_000 },
  );
});

/** The value with every object's keys reordered (reversed, or rotated by `seed`). */
function reorder(value: JsonValue, seed: number): JsonValue {
  if (Array.isArray(value)) return value.map((v) => reorder(v, seed + 1));
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value);
    const k = entries.length === 0 ? 0 : seed % entries.length;
    const rotated = [...entries.slice(k), ...entries.slice(0, k)].reverse();
    return Object.fromEntries(rotated.map(([key, v]) => [key, reorder(v as JsonValue, seed + 1)]));
  }
  return value;
}

/** A key-order-independent rendering of a JSON value (-0 renders as 0, like the canonical form). */
function sortedJson(value: JsonValue): string {
  if (Array.isArray(value)) return `[${value.map(sortedJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${sortedJson(value[k] as JsonValue)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

t.test("property: reordering keys keeps the key; different JSON values get different keys", async (t) => {
  // Objects without "__proto__" keys: Object.fromEntries would turn those into prototypes.
  const json = fc.jsonValue({ maxDepth: 4 }).filter((v) => !JSON.stringify(v).includes('"__proto__"')).map((v) => v as unknown as JsonValue);
  fc.assert(
    fc.property(json, fc.nat(), (value, seed) => payloadKey(jsonPayload(value)) === payloadKey(jsonPayload(reorder(value, seed)))),
    { numRuns: 500 },
  );
  fc.assert(
    fc.property(json, json, (a, b) => {
      fc.pre(sortedJson(a) !== sortedJson(b));
      return payloadKey(jsonPayload(a)) !== payloadKey(jsonPayload(b));
    }),
    { numRuns: 500 },
  );
  t.pass("both properties held");
});
