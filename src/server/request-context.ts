/** Values every handler reads from its context; the auth interceptor (a later issue) sets them. */
import { createContextKey, type HandlerContext } from "@connectrpc/connect";

/** The namespace a request runs in. Until API keys exist every request runs in "default". */
export const namespaceKey = createContextKey<string>("default", { description: "taskwire namespace" });

/** The caller's namespace. */
export function namespaceOf(ctx: HandlerContext): string {
  return ctx.values.get(namespaceKey);
}
