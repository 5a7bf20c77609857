/**
 * Connect/JSON clients see payloads as JSON, which needs the payload's message descriptor. Before
 * answering a JSON request, make sure every payload in the answer can be rendered: load the
 * descriptors of the job types involved, and when a type is still unknown (its job type was
 * registered without descriptors) answer FAILED_PRECONDITION saying how to fix it, instead of
 * failing while encoding.
 */
import type { HandlerContext } from "@connectrpc/connect";
import { TaskwireError } from "../core/errors.js";
import type { Payload } from "../core/task.js";
import type { JobTypeRegistry } from "../engine/job-type-registry.js";
import { typeNameOf, type PayloadTypes } from "./payloads.js";

/** True when the request (and so the response) uses a JSON codec. */
export function isJsonRequest(ctx: HandlerContext): boolean {
  return (ctx.requestHeader.get("content-type") ?? "").includes("json");
}

/** A payload-carrying item of a response. */
export interface Rendered {
  jobType: string;
  payloads: readonly (Payload | null)[];
}

/** Throws FAILED_PRECONDITION when a JSON response would hold a payload of an unknown type. */
export async function ensureJsonRenderable(
  ctx: HandlerContext,
  namespace: string,
  items: readonly Rendered[],
  jobTypes: JobTypeRegistry,
  payloads: PayloadTypes,
): Promise<void> {
  if (!isJsonRequest(ctx)) return;
  for (const item of items) {
    for (const payload of item.payloads) {
      if (payload === null) continue;
      const typeName = typeNameOf(payload.typeUrl);
      if (payloads.knowsJson(namespace, typeName)) continue;
      const jobType = await jobTypes.find(namespace, item.jobType);
      if (jobType !== undefined) payloads.registryOf(jobType);
      if (payloads.knowsJson(namespace, typeName)) continue;
      throw new TaskwireError(
        "PAYLOAD_NOT_RENDERABLE",
        `a payload of job type ${JSON.stringify(item.jobType)} is a ${typeName}, which the server cannot render as JSON: ` +
          `register the job type with descriptors, or call with a binary codec (gRPC, or Connect with application/proto)`,
      );
    }
  }
}
