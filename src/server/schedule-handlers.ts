/** ScheduleService: validate -> engine -> proto. */
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { invalidArgument } from "../core/errors.js";
import type { ServerLimits } from "../core/limits.js";
import { decodePageKey, encodePageToken, filterFingerprint, isNameKey } from "../core/page-token.js";
import { parseCron, type ScheduleRecord } from "../core/schedule.js";
import type { Engine } from "../engine/engine.js";
import type { ScheduleService } from "../gen/taskwire/v1/schedule_pb.js";
import { policyFromProto, scheduleToProto } from "./mapping.js";
import { ensureJsonRenderable, isJsonRequest } from "./json-rendering.js";
import type { PayloadTypes } from "./payloads.js";
import { namespaceOf } from "./request-context.js";
import { newTask } from "./task-handlers.js";
import { pageSize, requireName } from "./validation.js";

/** The ScheduleService implementation. */
export function createScheduleHandlers(engine: Engine, payloads: PayloadTypes, limits: ServerLimits): Partial<ServiceImpl<typeof ScheduleService>> {
  /**
   * A JSON answer must be able to show each schedule's task input (created by a binary client, of
   * a type the server knows by name only): FAILED_PRECONDITION saying how to fix it, not INTERNAL.
   */
  const renderable = (ctx: HandlerContext, schedules: readonly ScheduleRecord[]) =>
    ensureJsonRenderable(ctx, namespaceOf(ctx), schedules.map((x) => ({ jobType: x.jobType, payloads: [x.input] })), engine.jobTypes, payloads);
  /** Checked before a change, so a JSON caller never gets an error for a change that happened. */
  const renderableBefore = async (ctx: HandlerContext, name: string) => {
    if (isJsonRequest(ctx)) await renderable(ctx, [await engine.schedules.get(namespaceOf(ctx), name)]);
  };
  return {
    async createSchedule(req, ctx) {
      const namespace = namespaceOf(ctx);
      const name = requireName("name", req.name);
      const timeZone = req.timeZone === "" ? "UTC" : req.timeZone;
      const parsed = parseCron(req.cron, timeZone);
      if (!("times" in parsed)) throw invalidArgument(parsed.field, parsed.problem);
      const spec = req.task;
      if (spec?.runAt !== undefined) throw invalidArgument("task.run_at", "must be unset: a schedule's tasks run at their fire times");
      if (spec !== undefined && (spec.idempotencyKey !== "" || spec.dedupByPayload)) {
        throw invalidArgument(spec.idempotencyKey !== "" ? "task.idempotency_key" : "task.dedup_by_payload", "must be unset: each fire time already produces exactly one task");
      }
      if (spec !== undefined && (spec.dependsOn.length > 0 || spec.dependsOnIndex.length > 0)) {
        throw invalidArgument(spec.dependsOn.length > 0 ? "task.depends_on" : "task.depends_on_index", "must be unset: a schedule's tasks cannot have dependencies");
      }
      const missedPolicy = policyFromProto(req.missedFirePolicy);
      if (missedPolicy === undefined) {
        throw invalidArgument("missed_fire_policy", `${req.missedFirePolicy} is not a policy; use MISSED_FIRE_POLICY_SKIP or MISSED_FIRE_POLICY_RUN_ONCE`);
      }
      const task = await newTask(engine, payloads, namespace, spec, "task");
      const schedule = await engine.schedules.create({
        namespace,
        name,
        cron: req.cron,
        timeZone,
        jobType: task.jobType,
        input: task.input,
        priority: task.priority,
        maxAttempts: task.maxAttempts,
        timeoutMs: task.timeoutMs,
        backoffBaseMs: task.backoffBaseMs,
        backoffCapMs: task.backoffCapMs,
        concurrencyKey: task.concurrencyKey ?? null,
        missedPolicy,
        paused: req.paused,
      });
      return { schedule: scheduleToProto(schedule) };
    },

    async getSchedule(req, ctx) {
      const schedule = await engine.schedules.get(namespaceOf(ctx), requireName("name", req.name));
      await renderable(ctx, [schedule]);
      return { schedule: scheduleToProto(schedule) };
    },

    async listSchedules(req, ctx) {
      const namespace = namespaceOf(ctx);
      const size = pageSize("page_size", req.pageSize, limits);
      const fingerprint = filterFingerprint({ namespace, kind: "schedules" });
      const after = req.pageToken === "" ? null : decodePageKey(req.pageToken, fingerprint, isNameKey);
      const rows = await engine.schedules.list(namespace, after, size + 1);
      const page = rows.slice(0, size);
      await renderable(ctx, page);
      const last = page.at(-1);
      return {
        schedules: page.map(scheduleToProto),
        nextPageToken: rows.length > size && last !== undefined ? encodePageToken(last.name, fingerprint) : "",
      };
    },

    async pauseSchedule(req, ctx) {
      const name = requireName("name", req.name);
      await renderableBefore(ctx, name);
      return { schedule: scheduleToProto(await engine.schedules.pause(namespaceOf(ctx), name)) };
    },

    async resumeSchedule(req, ctx) {
      const name = requireName("name", req.name);
      await renderableBefore(ctx, name);
      return { schedule: scheduleToProto(await engine.schedules.resume(namespaceOf(ctx), name)) };
    },

    async deleteSchedule(req, ctx) {
      await engine.schedules.delete(namespaceOf(ctx), requireName("name", req.name));
      return {};
    },
  };
}
