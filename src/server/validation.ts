/** Field checks shared by the RPC handlers; each error names the field and what is allowed. */
import { durationMs, timestampMs, type Duration, type Timestamp } from "@bufbuild/protobuf/wkt";
import { invalidArgument } from "../core/errors.js";
import { LIMITS } from "../core/limits.js";
import { checkName, MESSAGE_NAME_PATTERN } from "../core/names.js";
import { PAYLOAD_KEY_PREFIX, payloadKey } from "../core/payload-hash.js";
import type { Payload, RateLimit } from "../core/task.js";
import type { Registry } from "@bufbuild/protobuf";
import { isTaskId } from "../core/task-id.js";

/** A job type or worker name. */
export function requireName(field: string, value: string): string {
  const problem = checkName(value);
  if (problem !== undefined) throw invalidArgument(field, problem);
  return value;
}

/** A protobuf message name, or "" (JSON). */
export function messageName(field: string, value: string): string {
  if (value !== "" && !MESSAGE_NAME_PATTERN.test(value)) {
    throw invalidArgument(field, `${JSON.stringify(value.slice(0, 200))} is not a fully-qualified message name such as "acme.mail.v1.SendEmail"; leave it empty for JSON`);
  }
  return value;
}


/** A task id: the decimal number Submit returned. */
export function taskId(field: string, value: string): string {
  if (!isTaskId(value)) {
    throw invalidArgument(field, value === "" ? "is required: the id Submit returned" : `${JSON.stringify(value.slice(0, 40))} is not a task id; ids are the decimal numbers Submit returns`);
  }
  return value;
}

/** An integer within [min, max]. */
export function intInRange(field: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) throw invalidArgument(field, `is ${value}; allowed: ${min} to ${max}`);
  return value;
}

/** A duration in whole ms within bounds, or null when unset. */
export function durationMsInRange(field: string, value: Duration | undefined, minMs: number, maxMs: number): number | null {
  if (value === undefined) return null;
  const ms = durationMs(value);
  if (!Number.isFinite(ms) || ms < minMs || ms > maxMs || value.nanos % 1_000_000 !== 0) {
    throw invalidArgument(field, `is ${ms} ms; allowed: ${minMs} ms to ${maxMs} ms in whole milliseconds`);
  }
  return ms;
}

/** An optional timestamp as a Date. */
export function optionalDate(field: string, value: Timestamp | undefined): Date | null {
  if (value === undefined) return null;
  const ms = timestampMs(value);
  if (!Number.isFinite(ms) || ms < 0 || ms > 253_402_300_799_000) throw invalidArgument(field, "is outside 1970-01-01 to 9999-12-31");
  return new Date(ms);
}

/** A page size: 0 means the server's default; otherwise 1 to its cap (--max-page-size). */
export function pageSize(field: string, value: number, limits: { maxPageSize: number; defaultPageSize: number }): number {
  if (value === 0) return Math.min(limits.defaultPageSize, limits.maxPageSize);
  if (!Number.isInteger(value) || value < 1 || value > limits.maxPageSize) {
    throw invalidArgument(field, `is ${value}; allowed: 1 to ${limits.maxPageSize} (the server's --max-page-size), or 0 for ${Math.min(limits.defaultPageSize, limits.maxPageSize)}`);
  }
  return value;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A lease token exactly as issued (lower-case UUID). */
export function leaseToken(field: string, value: string): string {
  const token = value.toLowerCase();
  if (!UUID.test(token)) throw invalidArgument(field, "must be the lease_token of the assignment (a UUID)");
  return token;
}

/**
 * Text cut to at most `max` characters, NUL characters replaced (PostgreSQL text cannot hold them),
 * for stored error messages, which must not be refused.
 */
export function truncate(value: string, max: number): string {
  const clean = value.replaceAll("\u0000", "\uFFFD");
  return clean.length <= max ? clean : `${clean.slice(0, max - 1)}…`;
}

/** Text of at most `max` characters, without NUL characters. */
export function boundedText(field: string, value: string, max: number): string {
  if (value.length > max) throw invalidArgument(field, `is ${value.length} characters; the limit is ${max}`);
  if (value.includes("\u0000")) throw invalidArgument(field, "contains a NUL character, which text fields cannot hold");
  return value;
}

/** A retry policy: each field in 0 .. 24 h, cap >= base; unset fields take `defaults`. */
export function retryPolicy(
  field: string,
  policy: { backoffBase?: Duration; backoffCap?: Duration } | undefined,
  defaults: { backoffBaseMs: number; backoffCapMs: number },
): { backoffBaseMs: number; backoffCapMs: number } {
  const base = durationMsInRange(`${field}.backoff_base`, policy?.backoffBase, 0, LIMITS.maxBackoffMs) ?? defaults.backoffBaseMs;
  const cap = durationMsInRange(`${field}.backoff_cap`, policy?.backoffCap, 0, LIMITS.maxBackoffMs) ?? Math.max(defaults.backoffCapMs, base);
  if (cap < base) throw invalidArgument(`${field}.backoff_cap`, `is ${cap} ms, below backoff_base (${base} ms); the cap must be at least the base`);
  return { backoffBaseMs: base, backoffCapMs: cap };
}

/** Control characters (C0, DEL, C1): keys are for logs and URLs too, so they must be printable. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * A task's idempotency key: the client's (1 to 256 printable characters, not in the payload-key
 * namespace), the payload's with dedup_by_payload, or null for none.
 */
export function idempotencyKey(
  field: string,
  spec: { idempotencyKey: string; dedupByPayload: boolean },
  input: Payload,
  registry: () => Registry | undefined,
): string | null {
  const key = spec.idempotencyKey;
  if (spec.dedupByPayload) {
    if (key !== "") throw invalidArgument(`${field}.dedup_by_payload`, "is set together with idempotency_key; set one of them (the payload's hash becomes the key)");
    return payloadKey(input, registry());
  }
  if (key === "") return null;
  if (key.length > LIMITS.maxIdempotencyKeyChars) {
    throw invalidArgument(`${field}.idempotency_key`, `is ${key.length} characters; allowed: 1 to ${LIMITS.maxIdempotencyKeyChars}`);
  }
  if (CONTROL.test(key)) throw invalidArgument(`${field}.idempotency_key`, "contains a control character; use printable characters only");
  if (key.startsWith(PAYLOAD_KEY_PREFIX)) {
    throw invalidArgument(`${field}.idempotency_key`, `starts with ${JSON.stringify(PAYLOAD_KEY_PREFIX)}, which is reserved for dedup_by_payload; choose another key`);
  }
  return key;
}

/**
 * A task's dependency lists: existing task ids (each a valid id, named once) and, in a batch,
 * positions of earlier tasks of the batch (`position` is this task's own; null outside a batch).
 * At most LIMITS.maxDependencies together.
 */
export function dependencyLists(
  field: string,
  spec: { dependsOn: readonly string[]; dependsOnIndex: readonly number[] },
  position: number | null,
): { dependsOn: string[]; dependsOnIndex: number[] } {
  const count = spec.dependsOn.length + spec.dependsOnIndex.length;
  if (count > LIMITS.maxDependencies) {
    throw invalidArgument(`${field}.depends_on`, `names ${count} dependencies (depends_on and depends_on_index together); the limit is ${LIMITS.maxDependencies} per task`);
  }
  const ids = new Set<string>();
  const dependsOn = spec.dependsOn.map((value, i) => {
    const id = taskId(`${field}.depends_on[${i}]`, value);
    if (ids.has(id)) throw invalidArgument(`${field}.depends_on[${i}]`, `names task ${id} a second time; name each dependency once`);
    ids.add(id);
    return id;
  });
  if (position === null && spec.dependsOnIndex.length > 0) {
    throw invalidArgument(`${field}.depends_on_index`, "refers to tasks of the same batch, so it is only allowed in SubmitBatch; use depends_on with the ids of existing tasks");
  }
  const indexes = new Set<number>();
  const dependsOnIndex = spec.dependsOnIndex.map((index, i) => {
    if (!Number.isInteger(index) || index < 0 || index >= (position ?? 0)) {
      throw invalidArgument(
        `${field}.depends_on_index[${i}]`,
        position === 0
          ? `is ${index}, but this is the first task of the batch; a task may depend only on tasks before it`
          : `is ${index}; allowed: 0 to ${(position ?? 0) - 1}, the tasks before this one in the batch (no forward references, so the graph has no cycles)`,
      );
    }
    if (indexes.has(index)) throw invalidArgument(`${field}.depends_on_index[${i}]`, `names task ${index} of the batch a second time; name each dependency once`);
    indexes.add(index);
    return index;
  });
  return { dependsOn, dependsOnIndex };
}

/** Visible ASCII: letters, digits and punctuation, no spaces. */
const CONCURRENCY_KEY = /^[\x21-\x7e]+$/;

/** A task's concurrency key: 1 to 128 visible ASCII characters, or "" for none (null). */
export function concurrencyKey(field: string, value: string): string | null {
  if (value === "") return null;
  if (value.length > LIMITS.maxConcurrencyKeyChars) {
    throw invalidArgument(field, `is ${value.length} characters; allowed: 1 to ${LIMITS.maxConcurrencyKeyChars}`);
  }
  if (!CONCURRENCY_KEY.test(value)) {
    const bad = [...value].find((c) => !CONCURRENCY_KEY.test(c))!;
    throw invalidArgument(field, `contains ${JSON.stringify(bad)}; use visible ASCII characters only (letters, digits, punctuation; no spaces), e.g. "customer-42"`);
  }
  return value;
}

/** A job type's rate limit: unset is none; when set, both fields are required and bounded. */
export function rateLimit(field: string, value: { maxStarts?: number; window?: Duration } | undefined): RateLimit | null {
  if (value === undefined) return null;
  if (value.maxStarts === undefined) {
    throw invalidArgument(`${field}.max_starts`, `is required: how many attempts may start per window, 0 to ${LIMITS.maxRateStarts}`);
  }
  const maxStarts = intInRange(`${field}.max_starts`, value.maxStarts, 0, LIMITS.maxRateStarts);
  if (value.window === undefined) {
    throw invalidArgument(`${field}.window`, `is required: the length of the window, ${LIMITS.minRateWindowMs} ms to ${LIMITS.maxRateWindowMs} ms`);
  }
  const windowMs = durationMsInRange(`${field}.window`, value.window, LIMITS.minRateWindowMs, LIMITS.maxRateWindowMs)!;
  return { maxStarts, windowMs };
}

/** max_running / max_running_per_key: unset is no limit (null); 0 is a limit (none start). */
export function runningLimit(field: string, value: number | undefined): number | null {
  if (value === undefined) return null;
  if (!Number.isInteger(value) || value < 0 || value > LIMITS.maxRunningLimit) {
    throw invalidArgument(field, `is ${value}; allowed: 0 to ${LIMITS.maxRunningLimit} (0: none start), or unset for no limit`);
  }
  return value;
}
