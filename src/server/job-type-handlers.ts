/** JobTypeService: validate -> registry -> proto. */
import { toBinary } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { FileDescriptorSetSchema, type Duration } from "@bufbuild/protobuf/wkt";
import { LIMITS, type ServerLimits } from "../core/limits.js";
import type { JobTypeRecord } from "../core/task.js";
import type { Engine } from "../engine/engine.js";
import type { JobTypeService } from "../gen/taskwire/v1/job_type_pb.js";
import { jobTypeToProto } from "./mapping.js";
import { parseDescriptors, type PayloadTypes } from "./payloads.js";
import { namespaceOf } from "./request-context.js";
import { decodePageKey, encodePageToken, filterFingerprint, isNameKey } from "../core/page-token.js";
import { durationMsInRange, intInRange, messageName, pageSize, rateLimit, requireName, retryPolicy, runningLimit } from "./validation.js";
import { invalidArgument } from "../core/errors.js";

/** The JobTypeService implementation. */
export function createJobTypeHandlers(engine: Engine, payloads: PayloadTypes, limits: ServerLimits): Partial<ServiceImpl<typeof JobTypeService>> {
  const toProto = (record: JobTypeRecord) => jobTypeToProto(record, limits.maxPayloadBytes);
  return {
    async registerJobType(req, ctx) {
      const name = requireName("name", req.name);
      const inputType = messageName("input_type", req.inputType);
      const outputType = messageName("output_type", req.outputType);
      let descriptors: Uint8Array | null = null;
      if (req.descriptors !== undefined && req.descriptors.file.length > 0) {
        descriptors = toBinary(FileDescriptorSetSchema, req.descriptors);
        parseDescriptors("descriptors", descriptors, [inputType, outputType]);
      }
      const retentionMs = retention(req.retention);
      const { record, created } = await engine.jobTypes.register({
        namespace: namespaceOf(ctx),
        name,
        inputType,
        outputType,
        descriptors,
        defaultPriority: req.defaultPriority === undefined ? 0 : intInRange("default_priority", req.defaultPriority, LIMITS.minPriority, LIMITS.maxPriority),
        defaultMaxAttempts: req.defaultMaxAttempts === undefined ? 3 : intInRange("default_max_attempts", req.defaultMaxAttempts, 1, LIMITS.maxAttempts),
        defaultTimeoutMs: durationMsInRange("default_timeout", req.defaultTimeout, LIMITS.minTimeoutMs, LIMITS.maxTimeoutMs),
        ...retryPolicy("default_retry", req.defaultRetry, { backoffBaseMs: LIMITS.defaultBackoffBaseMs, backoffCapMs: LIMITS.defaultBackoffCapMs }),
        leaseMs: durationMsInRange("lease_duration", req.leaseDuration, LIMITS.minLeaseMs, LIMITS.maxLeaseMs) ?? LIMITS.defaultLeaseMs,
        retentionMs,
        dedupWindowMs: dedupWindow(req.dedupWindow, retentionMs),
        inlineModule: req.inlineModule === "" ? null : inlineModule(engine, req.inlineModule),
        maxPayloadBytes: req.maxPayloadBytes === undefined ? null : maxPayload(req.maxPayloadBytes, limits),
        rateLimit: rateLimit("rate_limit", req.rateLimit),
        maxRunning: runningLimit("max_running", req.maxRunning),
        maxRunningPerKey: runningLimit("max_running_per_key", req.maxRunningPerKey),
      });
      payloads.registryOf(record); // make its messages renderable as JSON at once
      await engine.inline?.refresh(); // an inline job type (or one that stopped being inline) is served at once
      return { jobType: toProto(record), created };
    },

    async getJobType(req, ctx) {
      const record = await engine.jobTypes.get(namespaceOf(ctx), requireName("name", req.name));
      return { jobType: toProto(record) };
    },

    async listJobTypes(req, ctx) {
      const namespace = namespaceOf(ctx);
      const size = pageSize("page_size", req.pageSize, limits);
      const fingerprint = filterFingerprint({ namespace });
      const after = req.pageToken === "" ? null : decodePageKey(req.pageToken, fingerprint, isNameKey);
      const rows = await engine.jobTypes.list(namespace, after, size + 1);
      const page = rows.slice(0, size);
      const last = page.at(-1);
      return {
        jobTypes: page.map(toProto),
        nextPageToken: rows.length > size && last !== undefined ? encodePageToken(last.name, fingerprint) : "",
      };
    },
  };
}

/** A job type's payload limit: 1 byte to the server's --max-payload-bytes. */
function maxPayload(value: number, limits: ServerLimits): number {
  if (!Number.isInteger(value) || value < 1 || value > limits.maxPayloadBytes) {
    throw invalidArgument("max_payload_bytes", `is ${value}; allowed: 1 to ${limits.maxPayloadBytes} bytes (the server's --max-payload-bytes), or unset for that limit`);
  }
  return value;
}

/** Unset: the default; 0: keep forever (null); otherwise within the allowed range. */
function retention(value: Duration | undefined): number | null {
  if (value === undefined) return LIMITS.defaultRetentionMs;
  if (value.seconds === 0n && value.nanos === 0) return null;
  return durationMsInRange("retention", value, LIMITS.minRetentionMs, LIMITS.maxRetentionMs);
}

/** Unset or 0: none; otherwise within bounds and no longer than the retention (a deleted task cannot deduplicate). */
function dedupWindow(value: Duration | undefined, retentionMs: number | null): number | null {
  if (value === undefined || (value.seconds === 0n && value.nanos === 0)) return null;
  const ms = durationMsInRange("dedup_window", value, LIMITS.minDedupWindowMs, LIMITS.maxDedupWindowMs)!;
  if (retentionMs !== null && ms > retentionMs) {
    throw invalidArgument("dedup_window", `is ${ms} ms, longer than the retention (${retentionMs} ms): finished tasks are deleted before their key would be free; shorten it or lengthen retention`);
  }
  return ms;
}

/** An inline module the server can run; INVALID_ARGUMENT naming the folder when it cannot. */
function inlineModule(engine: Engine, name: string): string {
  if (engine.inline === null) {
    throw invalidArgument("inline_module", "is set, but this server runs no inline job types (it was started with --inline-threads 0)");
  }
  const problem = engine.inline.moduleProblem(name);
  if (problem !== null) throw invalidArgument("inline_module", problem);
  return name;
}
