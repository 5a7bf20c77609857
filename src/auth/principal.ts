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

/** Prefix of the limit key of requests without a key to public procedures; the remote address follows. */
export const ANONYMOUS_LIMIT_PREFIX = "anonymous:";

/**
 * The caller of a public procedure (health checks): no namespace, no role. Its streams
 * (Health.Watch) are counted per client (clientOf), not in one allowance shared by every caller
 * without a key, so one client opening watches cannot use up everyone's. Probes come from a few
 * addresses (kubelets, load balancers); callers behind one proxy share its address, which is no
 * worse than one allowance for all. All anonymous streams together have a bound too
 * (StreamRegistry), so many addresses cannot open streams without end.
 */
export function anonymousPrincipal(remoteAddress: string): Principal {
  return {
    keyId: null,
    actor: "",
    namespace: "",
    roles: new Set<Role>(),
    expiresAt: null,
    limitKey: `${ANONYMOUS_LIMIT_PREFIX}${clientOf(remoteAddress)}`,
  };
}

/**
 * The client a remote address stands for: an IPv4 address as it is (also when the socket shows it
 * IPv4-mapped, ::ffff:a.b.c.d), an IPv6 address by its /64 network (one host is given a whole /64
 * and may send from any address in it). Anything else is returned as given.
 */
export function clientOf(remoteAddress: string): string {
  const address = remoteAddress.replace(/%.*$/, "").toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(address);
  if (mapped !== null) return mapped[1]!;
  if (!address.includes(":")) return address;
  const groups = expandIPv6(address);
  return groups === undefined ? address : `${groups.slice(0, 4).join(":")}::/64`;
}

/** The eight 16-bit groups of an IPv6 address (without leading zeros), or undefined if it is not one. */
function expandIPv6(address: string): string[] | undefined {
  const halves = address.split("::");
  if (halves.length > 2) return undefined;
  const parse = (part: string) => (part === "" ? [] : part.split(":"));
  const head = parse(halves[0]!);
  const tail = halves.length === 2 ? parse(halves[1]!) : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...tail];
  if (!groups.every((g) => /^[0-9a-f]{1,4}$/.test(g))) return undefined;
  return groups.map((g) => g.replace(/^0+(?=.)/, ""));
}

/** Who a principal's streams are counted for, in a message: "API key <id>", "the address <a> (no key)" or "this caller". */
export function streamOwner(principal: Principal): string {
  if (principal.keyId !== null) return `API key ${principal.keyId}`;
  if (principal.limitKey.startsWith(ANONYMOUS_LIMIT_PREFIX)) return `the address ${principal.limitKey.slice(ANONYMOUS_LIMIT_PREFIX.length)} (no key)`;
  return "this caller";
}
