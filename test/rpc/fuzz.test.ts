/**
 * Hostile input over the real HTTP server: fast-check (seeded, bounded) sends every procedure
 * malformed protobuf bytes, malformed, oversized and deeply nested JSON, wrong types, huge strings
 * and unknown fields, as Connect JSON and binary and gRPC-Web (HTTP/1.1) and as gRPC (HTTP/2), with
 * good, bad and missing keys, sometimes claiming a compression. No answer may be INTERNAL or UNKNOWN, the server must stay up, and a rejected
 * request must leave the contents of every table as they were (a checksum of each, see `contents`).
 */
import http2 from "node:http2";
import { gzipSync } from "node:zlib";
import { fromJson, toBinary, type DescField, type DescMessage, type DescMethod } from "@bufbuild/protobuf";

import fc from "fast-check";
import t from "tap";
import { SERVICES } from "../../src/server/routes.js";
import { jsonAny } from "../helpers/payload.js";
import { clientsFor, createTestKey, startTestServer } from "../helpers/server.js";

const MAX_MESSAGE = 256 * 1024;
// No schedule fires during the run: a fuzzed CreateSchedule may be accepted, and its tasks would change the row counts.
const s = await startTestServer(t, { streamKeepaliveMs: 100, scheduleIntervalMs: 3_600_000, limits: { maxMessageBytes: MAX_MESSAGE, maxPayloadBytes: 128 * 1024 } });
const db = s.server.engine.database.db;
const { token } = await createTestKey(s.server.engine.database, "default", ["admin"]);
const c = clientsFor(s.url, token);
// Long leases: a claim a fuzz case makes must not expire (and write events) while the test runs.
await c.jobTypes.registerJobType({ name: "fuzz.job", leaseDuration: { seconds: 3600n, nanos: 0 } });
await c.jobTypes.registerJobType({ name: "fuzz.typed", inputType: "google.protobuf.StringValue", leaseDuration: { seconds: 3600n, nanos: 0 } });
const seeded = await c.tasks.submitBatch({ tasks: [1, 2, 3].map((i) => ({ jobType: "fuzz.job", input: jsonAny(i) })) });
const taskIds = seeded.tasks.map((task) => task.id);

const procedures = SERVICES.flatMap((service) => service.methods.map((method: DescMethod) => ({ path: `/${service.typeName}/${method.name}`, method })));

/**
 * Columns that change with no request behind them, left out of the checksum: a key's last use
 * (written by a timer), and a worker's liveness, which a Claim stream of an earlier case writes
 * (heartbeats, its close) after the case read its answer.
 */
const VOLATILE_COLUMNS = new Set(["api_key.last_used_at", "worker.last_seen_at", "worker.disconnected_at"]);
/** One statement giving an MD5 of every table of the public schema, each row's columns as text, rows in order. */
const CONTENTS_SQL = await (async () => {
  const tables = await db.query<{ table_name: string; columns: string[] }>(
    `SELECT c.table_name, array_agg(c.column_name::text ORDER BY c.ordinal_position) AS columns
     FROM information_schema.columns c JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
     WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' GROUP BY c.table_name ORDER BY c.table_name`,
  );
  const sums = tables.map(({ table_name: table, columns }) => {
    const kept = columns.filter((column) => !VOLATILE_COLUMNS.has(`${table}.${column}`)).map((column) => `x."${column}"`);
    const row = `row(${kept.join(", ")})::text`;
    return `SELECT '${table}' AS name, count(*)::int AS rows, md5(coalesce(string_agg(${row}, E'\\n' ORDER BY ${row}), '')) AS sum FROM "${table}" x`;
  });
  return sums.join("\nUNION ALL ");
})();

/** The contents of every table (row counts and checksums): a rejected request must not change them. */
async function contents(): Promise<Map<string, string>> {
  const rows = await db.query<{ name: string; rows: number; sum: string }>(CONTENTS_SQL);
  return new Map(rows.map((r) => [r.name, `${r.rows} rows, md5 ${r.sum}`]));
}

/** The tables whose contents differ, with how (empty: none). */
function changedTables(before: Map<string, string>, after: Map<string, string>): string[] {
  return [...new Set([...before.keys(), ...after.keys()])].filter((name) => before.get(name) !== after.get(name)).map((name) => `${name}: ${before.get(name)} -> ${after.get(name)}`);
}

const taskCount = async () => Number((await db.query<{ n: string }>("SELECT count(*)::text AS n FROM task"))[0]!.n);

t.test("the contents checksum covers every table, and only the volatile columns are left out", async (t) => {
  const before = await contents();
  t.ok(["task", "task_event", "job_type", "api_key", "namespace", "audit_event", "schedule", "worker"].every((name) => before.has(name)), `every table: ${[...before.keys()].join(", ")}`);
  await db.query("UPDATE api_key SET last_used_at = now()");
  t.same(changedTables(before, await contents()), [], "a key's last use is not counted");
  await db.query("UPDATE job_type SET default_max_attempts = default_max_attempts + 1 WHERE name = 'fuzz.job'");
  t.same(changedTables(before, await contents()).map((change) => change.split(":")[0]), ["job_type"], "a changed value in a row is");
  await db.query("UPDATE job_type SET default_max_attempts = default_max_attempts - 1 WHERE name = 'fuzz.job'");
  t.same(changedTables(before, await contents()), [], "and it is back as it was");
});

/** How the server answered: a code (Connect's names; gRPC numbers mapped to them), or still streaming. */
type Answer = { code: string; message: string } | { code: "ok" } | { code: "streaming" };

const GRPC_CODES = ["ok", "canceled", "unknown", "invalid_argument", "deadline_exceeded", "not_found", "already_exists", "permission_denied", "resource_exhausted", "failed_precondition", "aborted", "out_of_range", "unimplemented", "internal", "unavailable", "data_loss", "unauthenticated"];

const encoder = new TextEncoder();
const utf8 = (text: string) => encoder.encode(text);
/** One Connect/gRPC envelope: flags, 4-byte big-endian length, data. */
function envelope(data: Uint8Array, flags = 0, length = data.byteLength): Uint8Array {
  const out = new Uint8Array(5 + data.byteLength);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, length >>> 0);
  out.set(data, 5);
  return out;
}

/** The error of a Connect end-of-stream envelope (flag 2) in a streamed body, if present. */
function endStreamError(body: Uint8Array): Answer | undefined {
  for (let at = 0; at + 5 <= body.byteLength; ) {
    const flags = body[at]!;
    const length = new DataView(body.buffer, body.byteOffset + at + 1, 4).getUint32(0);
    if ((flags & 2) === 2) {
      const end = JSON.parse(new TextDecoder().decode(body.subarray(at + 5, at + 5 + length))) as { error?: { code: string; message?: string } };
      return end.error === undefined ? { code: "ok" } : { code: end.error.code, message: end.error.message ?? "" };
    }
    at += 5 + length;
  }
  return undefined;
}

const authHeader = (auth: string | undefined): Record<string, string> => (auth === undefined ? {} : { authorization: auth });

/** A Connect request over HTTP/1.1 (unary, or a stream read for at most `streamMs`). */
async function connectCall(path: string, contentType: string, body: Uint8Array, auth: string | undefined, streaming: boolean, extra: Record<string, string> = {}): Promise<Answer> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), streaming ? 300 : 10_000);
  try {
    const response = await fetch(`${s.url}${path}`, {
      method: "POST",
      headers: { "content-type": contentType, "connect-protocol-version": "1", ...authHeader(auth), ...extra },
      body,
      signal: abort.signal,
    });
    const chunks: Uint8Array[] = [];
    try {
      for await (const chunk of response.body ?? []) chunks.push(chunk as Uint8Array);
    } catch (error) {
      if (!abort.signal.aborted) throw error;
      return { code: "streaming" };
    }
    const bytes = Buffer.concat(chunks);
    if (streaming && response.status === 200) return endStreamError(bytes) ?? { code: "ok" };
    if (response.status === 200) return { code: "ok" };
    try {
      const error = JSON.parse(bytes.toString("utf8")) as { code?: string; message?: string };
      // The HTTP status must agree: a 500 (what Connect gives INTERNAL and UNKNOWN) is a failure whatever the body says.
      if (response.status === 500) return { code: `http ${response.status}`, message: `${error.code}: ${error.message}` };
      return { code: error.code ?? `http ${response.status}`, message: error.message ?? "" };
    } catch {
      return { code: `http ${response.status}`, message: bytes.toString("utf8").slice(0, 200) };
    }
  } catch (error) {
    if (abort.signal.aborted) return { code: "streaming" };
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/** A gRPC-Web request over HTTP/1.1: the status is in the trailer frame (flag 0x80) at the end of the body. */
async function grpcWebCall(path: string, body: Uint8Array, auth: string | undefined, streaming: boolean, extra: Record<string, string> = {}): Promise<Answer> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), streaming ? 300 : 10_000);
  try {
    const response = await fetch(`${s.url}${path}`, { method: "POST", headers: { "content-type": "application/grpc-web+proto", ...authHeader(auth), ...extra }, body, signal: abort.signal });
    const chunks: Uint8Array[] = [];
    try {
      for await (const chunk of response.body ?? []) chunks.push(chunk as Uint8Array);
    } catch (error) {
      if (abort.signal.aborted) return { code: "streaming" };
      throw error;
    }
    const status = response.headers.get("grpc-status");
    if (status !== null) return status === "0" ? { code: "ok" } : { code: GRPC_CODES[Number(status)] ?? `grpc ${status}`, message: decodeURIComponent(response.headers.get("grpc-message") ?? "") };
    const bytes = Buffer.concat(chunks);
    for (let at = 0; at + 5 <= bytes.byteLength; ) {
      const length = bytes.readUInt32BE(at + 1);
      if ((bytes[at]! & 0x80) !== 0) {
        const text = bytes.subarray(at + 5, at + 5 + length).toString("utf8");
        const code = /grpc-status:\s*(\d+)/i.exec(text)?.[1];
        const message = decodeURIComponent(/grpc-message:\s*(.*)/i.exec(text)?.[1]?.trim() ?? "");
        return code === "0" ? { code: "ok" } : { code: GRPC_CODES[Number(code)] ?? `grpc ${code}`, message };
      }
      at += 5 + length;
    }
    return response.status === 200 ? { code: "ok" } : { code: `http ${response.status}`, message: "" };
  } catch (error) {
    if (abort.signal.aborted) return { code: "streaming" };
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

let session: http2.ClientHttp2Session | undefined;
/**
 * A gRPC request over HTTP/2; a streaming call still open after 300 ms counts as accepted. A unary
 * call is always waited for: cut short, a slow write could commit during the next case's check.
 */
function grpcCall(path: string, body: Uint8Array, auth: string | undefined, streaming: boolean, extra: Record<string, string> = {}): Promise<Answer> {
  if (session === undefined || session.closed || session.destroyed) {
    session = http2.connect(s.url);
    session.on("error", () => undefined);
  }
  const current = session;
  return new Promise<Answer>((resolve, reject) => {
    const req = current.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...authHeader(auth), ...extra });
    let status: string | undefined;
    let message = "";
    const timer = setTimeout(() => {
      req.close(http2.constants.NGHTTP2_CANCEL);
      resolve({ code: "streaming" });
    }, streaming ? 300 : 10_000);
    const take = (headers: http2.IncomingHttpHeaders) => {
      if (headers["grpc-status"] !== undefined) {
        status = String(headers["grpc-status"]);
        message = decodeURIComponent(String(headers["grpc-message"] ?? ""));
      }
    };
    // The answer may come before the whole body is sent (an oversized message): the status decides.
    const settle = () => {
      if (status === undefined) return;
      clearTimeout(timer);
      resolve(status === "0" ? { code: "ok" } : { code: GRPC_CODES[Number(status)] ?? `grpc ${status}`, message });
      req.close();
    };
    req.on("response", (headers) => {
      take(headers);
      settle();
    });
    req.on("trailers", (headers) => {
      take(headers);
      settle();
    });
    req.on("data", () => undefined);
    req.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    req.on("close", () => {
      clearTimeout(timer);
      if (status === undefined) resolve({ code: "streaming" });
      else resolve(status === "0" ? { code: "ok" } : { code: GRPC_CODES[Number(status)] ?? `grpc ${status}`, message });
    });
    req.end(body);
  });
}

// ---- generators ----

const knownNames = fc.constantFrom("fuzz.job", "fuzz.typed", "default", "w1", ...taskIds);
const hugeString = fc.constantFrom("x".repeat(100_000), "é".repeat(50_000), "\u0000".repeat(1_000), "\ud800".repeat(1000));
const anyString = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: "binary", maxLength: 40 }), knownNames, hugeString);
const garbage = fc.jsonValue({ maxDepth: 3 });

/** A JSON value for a field: mostly of the right shape, sometimes of any type. */
function fieldValue(field: DescField, depth: number): fc.Arbitrary<unknown> {
  const element = (): fc.Arbitrary<unknown> => {
    switch (field.fieldKind) {
      case "scalar":
      case "list":
        if (field.fieldKind === "list" && field.listKind === "message") return message(field.message, depth - 1);
        if (field.fieldKind === "list" && field.listKind === "enum") return fc.oneof(fc.integer({ min: -3, max: 10 }), fc.string({ maxLength: 10 }));
        return fc.oneof(anyString, fc.integer(), fc.double(), fc.bigInt().map(String), fc.boolean());
      case "enum":
        return fc.oneof(fc.integer({ min: -3, max: 10 }), fc.constantFrom(...field.enum.values.map((v) => v.name)), fc.string({ maxLength: 10 }));
      case "message":
        return message(field.message, depth - 1);
      case "map":
        return fc.dictionary(fc.string({ maxLength: 8 }), garbage, { maxKeys: 3 });
    }
  };
  const shaped = field.fieldKind === "list" ? fc.array(element(), { maxLength: 4 }) : element();
  return fc.oneof({ weight: 4, arbitrary: shaped }, { weight: 1, arbitrary: garbage });
}

/** A JSON object shaped like `desc` (well-known types as their JSON forms), with unknown fields mixed in. */
function message(desc: DescMessage, depth: number): fc.Arbitrary<unknown> {
  switch (desc.typeName) {
    case "google.protobuf.Any":
      return fc.record({ "@type": fc.oneof(fc.constantFrom("type.googleapis.com/google.protobuf.Value", "type.googleapis.com/google.protobuf.StringValue", "type.googleapis.com/nope.Nope", ""), fc.string()), value: garbage }, { requiredKeys: [] });
    case "google.protobuf.Duration":
      return fc.oneof(fc.constantFrom("1s", "0s", "-1s", "0.5s", "315576000000s", "1e9s", "s", "1.0000000001s"), fc.string({ maxLength: 12 }));
    case "google.protobuf.Timestamp":
      return fc.oneof(fc.constantFrom("1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "2024-13-45T99:99:99Z"), fc.string({ maxLength: 12 }));
    case "google.protobuf.Value":
    case "google.protobuf.Struct":
      return garbage;
  }
  if (depth <= 0) return garbage;
  const fields: Record<string, fc.Arbitrary<unknown>> = {};
  for (const field of desc.fields) fields[field.jsonName] = fieldValue(field, depth);
  return fc.tuple(fc.record(fields, { requiredKeys: [] }), fc.dictionary(fc.string({ maxLength: 8 }), garbage, { maxKeys: 2 })).map(([known, unknown]) => ({ ...unknown, ...known }));
}

/** Protobuf bytes for `desc`: a valid encoding of a generated message, then maybe corrupted; or random bytes. */
function binary(desc: DescMessage): fc.Arbitrary<Uint8Array> {
  const valid = message(desc, 3).map((json) => {
    try {
      return toBinary(desc, fromJson(desc, json as never, { ignoreUnknownFields: true }));
    } catch {
      return new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    }
  });
  const corrupted = fc.tuple(valid, fc.nat(), fc.integer({ min: 0, max: 255 }), fc.boolean()).map(([bytes, at, byte, truncate]) => {
    if (bytes.byteLength === 0) return new Uint8Array([byte]);
    const copy = bytes.slice(0, truncate ? at % bytes.byteLength : bytes.byteLength);
    if (!truncate) copy[at % copy.byteLength] = byte;
    return copy;
  });
  return fc.oneof(valid, corrupted, fc.uint8Array({ maxLength: 300 }));
}

const auths = fc.oneof(
  { weight: 12, arbitrary: fc.constant<string | undefined>(`Bearer ${token}`) },
  { weight: 1, arbitrary: fc.constantFrom<string | undefined>(undefined, "Bearer tw_0000000000000000_" + "A".repeat(43), "Bearer", "Basic Zm9vOmJhcg==", `Bearer ${token}x`, `Bearer ${token.slice(0, -1)}`) },
);

type Protocol = "connect-json" | "connect-proto" | "grpc" | "grpc-web";
interface Case {
  procedure: (typeof procedures)[number];
  protocol: Protocol;
  body: Uint8Array;
  auth: string | undefined;
  /** Claim the body is gzip-compressed (it may or may not be). */
  gzip?: boolean;
}

const caseArbitrary: fc.Arbitrary<Case> = fc
  .tuple(fc.constantFrom(...procedures), fc.constantFrom<Protocol>("connect-json", "connect-proto", "grpc", "grpc-web"), auths)
  .chain(([procedure, protocol, auth]) => {
    const input = procedure.method.input;
    const json = fc.oneof(
      { weight: 5, arbitrary: message(input, 3).map((value) => utf8(JSON.stringify(value))) },
      { weight: 1, arbitrary: fc.string({ maxLength: 60 }).map(utf8) },
      { weight: 1, arbitrary: garbage.map((value) => utf8(JSON.stringify(value))) },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 100 }) },
    );
    const raw = protocol === "connect-json" ? json : binary(input);
    const streamed = procedure.method.methodKind !== "unary" || protocol === "grpc" || protocol === "grpc-web";
    const body = streamed
      ? fc.oneof({ weight: 4, arbitrary: raw.map((b) => envelope(b)) }, { weight: 1, arbitrary: fc.tuple(raw, fc.integer({ min: 0, max: 255 }), fc.nat()).map(([b, flags, length]) => envelope(b, flags, length)) }, { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }) })
      : raw;
    // Sometimes claimed to be gzip: garbage, or real gzip of the body.
    const gzip = fc.oneof({ weight: 6, arbitrary: fc.constant<"no" | "garbage" | "real">("no") }, { weight: 1, arbitrary: fc.constantFrom<"no" | "garbage" | "real">("garbage", "real") });
    return fc.tuple(body, gzip, raw).map(([b, mode, plain]) => {
      if (mode === "no") return { procedure, protocol, body: b, auth };
      const compressed = mode === "real" ? new Uint8Array(gzipSync(plain)) : plain;
      return { procedure, protocol, body: streamed ? envelope(compressed, 1) : compressed, auth, gzip: true };
    });
  });

/** Sends one case. */
function send(kase: Case): Promise<Answer> {
  const streaming = kase.procedure.method.methodKind !== "unary";
  if (kase.protocol === "grpc") return grpcCall(kase.procedure.path, kase.body, kase.auth, streaming, kase.gzip === true ? { "grpc-encoding": "gzip" } : {});
  if (kase.protocol === "grpc-web") return grpcWebCall(kase.procedure.path, kase.body, kase.auth, streaming, kase.gzip === true ? { "grpc-encoding": "gzip" } : {});
  const type = kase.protocol === "connect-json" ? (streaming ? "application/connect+json" : "application/json") : streaming ? "application/connect+proto" : "application/proto";
  const encoding: Record<string, string> = kase.gzip !== true ? {} : streaming ? { "connect-content-encoding": "gzip" } : { "content-encoding": "gzip" };
  return connectCall(kase.procedure.path, type, kase.body, kase.auth, streaming, encoding);
}

/** The server answers /healthz. */
async function up(): Promise<boolean> {
  return (await fetch(`${s.url}/healthz`)).status === 200;
}

const seen = new Map<string, number>();
/** Sends a case and checks the rules; returns a description of what went wrong, or undefined. */
async function check(kase: Case): Promise<string | undefined> {
  const before = await contents();
  let answer: Answer;
  try {
    answer = await send(kase);
  } catch (error) {
    return `${kase.protocol} ${kase.procedure.path}: the request failed at the transport (${String(error)})`;
  }
  seen.set(answer.code, (seen.get(answer.code) ?? 0) + 1);
  const label = `${kase.protocol} ${kase.procedure.path} (${kase.body.byteLength} bytes)`;
  // 505: Connect's answer to a bidirectional stream over HTTP/1.1 (Claim needs HTTP/2), not a failure.
  if (answer.code === "internal" || answer.code === "unknown" || (/^http 5/.test(answer.code) && answer.code !== "http 505")) {
    return `${label}: answered ${answer.code}: ${"message" in answer ? answer.message : ""}`;
  }
  if (!(await up())) return `${label}: the server is down after it`;
  if (answer.code !== "ok" && answer.code !== "streaming") {
    const changed = changedTables(before, await contents());
    if (changed.length > 0) return `${label}: rejected with ${answer.code}, yet tables changed: ${changed.join("; ")}`;
  }
  return undefined;
}

t.test("random hostile requests to every procedure, over four protocols", async (t) => {
  const problems: string[] = [];
  // fc.check, not fc.assert: a failing case is reported by its problem, not by printing its (large) body.
  const result = await fc.check(
    fc.asyncProperty(caseArbitrary, async (kase) => {
      const problem = await check(kase);
      if (problem !== undefined) problems.push(problem.slice(0, 600));
      return problem === undefined;
    }),
    { seed: 20260707, numRuns: 2_000, endOnFailure: true },
  );
  t.same(problems.slice(0, 5), [], `no failing case (seed ${result.seed}, ${result.numRuns} runs)`);
  t.comment(`answers: ${JSON.stringify(Object.fromEntries(seen))}`);
  t.ok((seen.get("invalid_argument") ?? 0) > 0 && (seen.get("unauthenticated") ?? 0) > 0, "the runs reached validation and authentication");
});

/** Nested JSON lists, `depth` deep. */
const nestedJson = (depth: number) => `${"[".repeat(depth)}${"]".repeat(depth)}`;
/** A varint. */
function varint(n: number): number[] {
  const out: number[] = [];
  for (; n >= 0x80; n = Math.floor(n / 128)) out.push((n % 128) | 0x80);
  out.push(n);
  return out;
}
/** A google.protobuf.Value of lists nested `depth` deep, encoded by hand (protobuf-es would recurse that deep). */
function nestedValue(depth: number): Uint8Array {
  let value = [0x08, 0x00]; // null_value
  for (let i = 0; i < depth; i++) {
    const list = [0x0a, ...varint(value.length), ...value]; // ListValue.values (1)
    value = [0x32, ...varint(list.length), ...list]; // Value.list_value (6)
  }
  return new Uint8Array(value);
}

t.test("fixed extremes: oversized, deeply nested and empty bodies on every procedure", async (t) => {
  const oversized = utf8(JSON.stringify({ name: "x".repeat(MAX_MESSAGE + 10) }));
  const jsonBodies = [oversized, utf8(nestedJson(20_000)), utf8(`{"a":${nestedJson(5_000)}}`), new Uint8Array()];
  const binaryBodies = [new Uint8Array(MAX_MESSAGE + 10).fill(0x0a), nestedValue(2_000), new Uint8Array()];
  const problems: string[] = [];
  for (const procedure of procedures) {
    for (const protocol of ["connect-json", "connect-proto", "grpc", "grpc-web"] as const) {
      const streamed = procedure.method.methodKind !== "unary" || protocol === "grpc" || protocol === "grpc-web";
      const wrap = (b: Uint8Array) => (streamed ? envelope(b) : b);
      const bodies = protocol === "connect-json" ? jsonBodies : binaryBodies;
      for (const body of bodies) {
        const problem = await check({ procedure, protocol, body: wrap(body), auth: `Bearer ${token}` });
        if (problem !== undefined) problems.push(problem);
      }
    }
  }
  t.same(problems, [], "no INTERNAL/UNKNOWN, the server up, nothing written for rejections");
});

t.test("a huge unknown health service name is answered NOT_FOUND over gRPC, not with trailers too large to send", async (t) => {
  const name = "x".repeat(100_000);
  const body = envelope(new Uint8Array([0x0a, ...varint(name.length), ...utf8(name)]));
  const answer = await grpcCall("/grpc.health.v1.Health/Check", body, undefined, false);
  t.match(answer, { code: "not_found", message: /^unknown service "x{100}" \(100000 characters\)$/ });
});

t.test("deep payloads in Submit: refused by nesting depth, never crashing the renderer", async (t) => {
  const submitJson = (value: string) => utf8(`{"task":{"jobType":"fuzz.job","input":{"@type":"type.googleapis.com/google.protobuf.Value","value":${value}}}}`);
  const before = await taskCount();
  for (const depth of [33, 1_000, 10_000]) {
    const answer = await connectCall("/taskwire.v1.TaskService/Submit", "application/json", submitJson(nestedJson(depth)), `Bearer ${token}`, false);
    t.equal(answer.code, "invalid_argument", `JSON nested ${depth} deep: ${"message" in answer ? answer.message : ""}`);
  }
  // nestedValue(n) is n lists around a null: n + 1 levels.
  for (const depth of [32, 500, 31]) {
    const value = nestedValue(depth);
    const result = await c.tasks.submit({ task: { jobType: "fuzz.job", input: { $typeName: "google.protobuf.Any", typeUrl: "type.googleapis.com/google.protobuf.Value", value } } }).then(
      () => "ok",
      (error: { code: number; rawMessage: string }) => `${error.code} ${error.rawMessage}`,
    );
    if (depth >= 32) t.match(result, /^3 task\.input: (is JSON nested more than 32 levels deep|does not decode)/, `binary Value nested ${depth} deep is refused: ${result}`);
    else t.equal(result, "ok", `binary Value nested ${depth} deep is accepted`);
  }
  t.equal(await taskCount(), before + 1, "only the acceptable one was written");
  const [last] = (await c.tasks.listTasks({ pageSize: 1 })).tasks;
  const rendered = await connectCall("/taskwire.v1.TaskService/GetTask", "application/json", utf8(JSON.stringify({ id: last!.id })), `Bearer ${token}`, false);
  t.equal(rendered.code, "ok", "the deepest accepted payload renders as JSON");
});

t.teardown(() => session?.destroy());
