/** Who a request runs as: set by the request gate, read by every handler through src/server/request-context.ts. */
import { DEV_ACTOR } from "../core/api-key.js";
import { OPERATOR_NAMESPACE, ROLES, type Grant, type Role } from "../core/roles.js";

/** An authenticated caller. The namespace always comes from here, never from a request field. */
export interface Principal extends Grant {
  /** The API key's id; null for a request without a key (development mode, public procedures). */
  readonly keyId: string | null;
  /** What audit columns record: the key id, or "dev". */
  readonly actor: string;
  /** When the key stops working (streams opened with it end then); null: never. */
  readonly expiresAt: Date | null;
  /** The counter streams and submits are limited by: the key id, "dev" or "anonymous". */
  readonly limitKey: string;
}

/** Development mode: no key exists, the server listens on loopback, every request runs in "default" with every role. */
export const DEV_PRINCIPAL: Principal = {
  keyId: null,
  actor: DEV_ACTOR,
  namespace: OPERATOR_NAMESPACE,
  roles: new Set<Role>(ROLES),
  expiresAt: null,
  limitKey: DEV_ACTOR,
};

/** The caller of a public procedure (health checks): no namespace, no role. */
export const ANONYMOUS_PRINCIPAL: Principal = {
  keyId: null,
  actor: "",
  namespace: "",
  roles: new Set<Role>(),
  expiresAt: null,
  limitKey: "anonymous",
};
