/**
 * The request gate: authenticates every RPC from its headers, before the body is read (Connect's
 * `requestGate`), checks the procedure table for the role it needs, and puts the principal in the
 * handler context. Unauthenticated requests cost no decoding; public procedures (health) pass.
 */
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import type { Logger } from "pino";
import type { Authenticator } from "../auth/authenticator.js";
import { anonymousPrincipal } from "../auth/principal.js";
import { deniedReason, isPublic } from "../core/roles.js";
import { toConnectError } from "./error-mapping.js";
import { principalKey, remoteAddressKey } from "./request-context.js";
import { setRequestNamespace } from "./request-namespace.js";

/** "package.Service/Method" of the call. */
export function procedureOf(ctx: Pick<HandlerContext, "service" | "method">): string {
  return `${ctx.service.typeName}/${ctx.method.name}`;
}

/** Creates the gate. Errors become ConnectErrors here: the gate runs outside the interceptors. */
export function createAuthGate(auth: Authenticator, logger: Logger): (ctx: HandlerContext) => Promise<void> {
  return async (ctx) => {
    const procedure = procedureOf(ctx);
    if (isPublic(procedure)) {
      ctx.values.set(principalKey, anonymousPrincipal(ctx.values.get(remoteAddressKey)));
      return;
    }
    try {
      const principal = await auth.authenticate(ctx.requestHeader.get("authorization"));
      const denied = deniedReason(procedure, principal);
      if (denied !== undefined) throw new ConnectError(denied, Code.PermissionDenied);
      ctx.values.set(principalKey, principal);
      // Before the body is decoded: typed JSON payloads are read with this namespace's message types.
      setRequestNamespace(principal.namespace);
    } catch (error) {
      throw toConnectError(error, logger, { procedure });
    }
  };
}
