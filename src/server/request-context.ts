/** Values every handler reads from its context; the request gate (auth-gate.ts) sets them before the body is read. */
import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import type { Principal } from "../auth/principal.js";
import { TaskwireError } from "../core/errors.js";

/** The authenticated caller; unset only if the gate did not run, which fails closed below. */
export const principalKey = createContextKey<Principal | undefined>(undefined, { description: "taskwire principal" });

/** The remote address of the request's connection (set from the Node request by server.ts); "" when unknown. */
export const remoteAddressKey = createContextKey<string>("", { description: "taskwire remote address" });

/** The caller. */
export function principalOf(ctx: HandlerContext): Principal {
  const principal = ctx.values.get(principalKey);
  if (principal === undefined) throw new TaskwireError("INTERNAL", "a request reached a handler without passing the request gate");
  return principal;
}

/** The caller's namespace: always the key's, never a request field. */
export function namespaceOf(ctx: HandlerContext): string {
  return principalOf(ctx).namespace;
}

/** What audit columns record for this request: the key id, or "dev" in development mode. */
export function actorOf(ctx: HandlerContext): string {
  return principalOf(ctx).actor;
}
