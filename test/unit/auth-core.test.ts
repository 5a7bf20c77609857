/** The pure parts of tenancy: tokens, roles and the procedure table, the token bucket, durations, limits, key state. */
import t from "tap";
import { keyUnusableReason } from "../../src/core/api-key.js";
import { bearerToken, formatToken, parseToken } from "../../src/core/api-key-token.js";
import { parseDurationText } from "../../src/core/duration-text.js";
import { DEFAULT_SERVER_LIMITS, LIMIT_SPECS, serverLimitProblems } from "../../src/core/limits.js";
import { checkNamespaceName } from "../../src/core/names.js";
import { deniedReason, isOperator, parseRoles, PROCEDURE_ACCESS, type Role } from "../../src/core/roles.js";
import { fullBucket, isFull, takeTokens } from "../../src/core/token-bucket.js";

const SECRET = "A".repeat(20) + "_-" + "b".repeat(21); // 43 base64url characters, with '_' inside

t.test("tokens: tw_<id>_<secret>, the secret may contain '_'", async (t) => {
  const token = formatToken("0123456789abcdef", SECRET);
  t.equal(token, `tw_0123456789abcdef_${SECRET}`);
  t.same(parseToken(token), { id: "0123456789abcdef", secret: SECRET });
  for (const bad of ["", "tw_", "tw_0123456789abcdef", `tw_0123456789ABCDEF_${SECRET}`, `tw_0123456789abcde_${SECRET}`, `xx_0123456789abcdef_${SECRET}`, `tw_0123456789abcdef_short`, `tw_0123456789abcdef_${SECRET}!`, `tw_0123456789abcdef_${"a".repeat(300)}`]) {
    t.equal(parseToken(bad), undefined, JSON.stringify(bad.slice(0, 40)));
  }
  t.equal(bearerToken("Bearer abc"), "abc");
  t.equal(bearerToken("bearer   abc "), "abc", "scheme case-insensitive, spaces tolerated");
  t.equal(bearerToken("Basic abc"), undefined);
  t.equal(bearerToken("Bearer a b"), undefined);
  t.equal(bearerToken(null), undefined);
});

t.test("roles: parsing, the operator, and denials that name the role needed", async (t) => {
  t.same(parseRoles("producer,watcher"), ["producer", "watcher"]);
  t.same(parseRoles(" worker , worker "), ["worker"], "trimmed and deduplicated");
  t.throws(() => parseRoles(""), /no role given/);
  t.throws(() => parseRoles("producer,boss"), /"boss" is not a role; use one or more of producer, worker, watcher, admin/);
  const grant = (namespace: string, ...roles: Role[]) => ({ namespace, roles: new Set(roles) });
  t.ok(isOperator(grant("default", "admin")));
  t.notOk(isOperator(grant("acme", "admin")), "an admin elsewhere is not an operator");
  t.notOk(isOperator(grant("default", "producer")));
  t.equal(deniedReason("taskwire.v1.TaskService/Submit", grant("acme", "producer")), undefined);
  t.equal(deniedReason("taskwire.v1.TaskService/Submit", grant("acme", "admin")), undefined, "admin may do everything");
  t.equal(deniedReason("taskwire.v1.TaskService/Submit", grant("acme", "watcher")), "taskwire.v1.TaskService/Submit needs the producer role (or admin); this key has only watcher");
  t.match(deniedReason("taskwire.v1.TaskService/GetTask", grant("acme", "worker")) ?? "", /needs one of the roles producer, watcher \(or admin\)/);
  t.match(deniedReason("taskwire.v1.AdminService/CreateNamespace", grant("acme", "admin")) ?? "", /needs an operator key/);
  t.equal(deniedReason("taskwire.v1.AdminService/CreateNamespace", grant("default", "admin")), undefined);
  t.equal(deniedReason("grpc.health.v1.Health/Check", grant("", )), undefined, "health is public");
  t.match(deniedReason("taskwire.v1.TaskService/Unlisted", grant("default", "admin")) ?? "", /not a procedure this server grants/, "fail closed");
  t.ok(Object.keys(PROCEDURE_ACCESS).length >= 27);
});

t.test("token bucket: burst, refill, and costs above the burst", async (t) => {
  const rule = { ratePerSec: 10, burst: 5 };
  const bucket = fullBucket(rule, 0);
  for (let i = 0; i < 5; i++) t.same(takeTokens(bucket, rule, 1, 0), { ok: true });
  t.same(takeTokens(bucket, rule, 1, 0), { ok: false, retryAfterMs: 100, never: false }, "empty: one token comes back in 100 ms");
  t.same(takeTokens(bucket, rule, 1, 100), { ok: true }, "refilled");
  t.same(takeTokens(bucket, rule, 3, 150), { ok: false, retryAfterMs: 250, never: false }, "0.5 left, 2.5 missing at 10/s");
  t.same(takeTokens(bucket, rule, 6, 10_000), { ok: false, retryAfterMs: Infinity, never: true }, "more than the burst never passes");
  t.equal(bucket.tokens, 5, "refill stops at the burst");
  t.same(takeTokens(bucket, rule, 5, 10_000), { ok: true });
  t.notOk(isFull(bucket, rule, 10_000));
  t.ok(isFull(bucket, rule, 10_500));
  t.same(takeTokens(bucket, rule, 1, 9_000), { ok: false, retryAfterMs: 100, never: false }, "a clock going back refills nothing");
});

t.test("durations as typed on the command line", async (t) => {
  t.equal(parseDurationText("90d"), 90 * 86_400_000);
  t.equal(parseDurationText("12h"), 12 * 3_600_000);
  t.equal(parseDurationText("30m"), 1_800_000);
  t.equal(parseDurationText("45s"), 45_000);
  t.equal(parseDurationText("1500ms"), 1_500);
  t.equal(parseDurationText("0s"), 0, "zero is a value (the caller bounds it)");
  for (const bad of ["", "90", "d", "1.5h", "-1d", "1w", "9999999999d"]) t.throws(() => parseDurationText(bad), /is not a duration/, bad);
});

t.test("server limits: defaults are valid, each bound and the consistency rules are enforced", async (t) => {
  t.same(serverLimitProblems(DEFAULT_SERVER_LIMITS), []);
  for (const [name, spec] of Object.entries(LIMIT_SPECS)) {
    const problems = serverLimitProblems({ ...DEFAULT_SERVER_LIMITS, [name]: spec.max + 1 });
    t.ok(problems.some((p) => p.startsWith(`${spec.flag} is ${spec.max + 1}; allowed: ${spec.min} to ${spec.max}`)), spec.flag);
  }
  t.match(serverLimitProblems({ ...DEFAULT_SERVER_LIMITS, defaultPageSize: 500, maxPageSize: 100 }).join(), /--default-page-size \(500\) is larger than --max-page-size \(100\)/);
  t.match(serverLimitProblems({ ...DEFAULT_SERVER_LIMITS, maxPayloadBytes: 5 * 1024 * 1024 }).join(), /--max-payload-bytes \(5242880\) needs --max-message-bytes of at least/);
  t.match(serverLimitProblems({ ...DEFAULT_SERVER_LIMITS, submitRatePerSec: 0 }).join(), /--submit-rate is 0; allowed: 1/, "0 is a value, and out of bounds here");
});

t.test("key state and namespace names", async (t) => {
  const now = Date.parse("2026-01-01T00:00:00Z");
  t.equal(keyUnusableReason({ id: "k", expiresAt: null, revokedAt: null }, now), undefined);
  t.equal(keyUnusableReason({ id: "k", expiresAt: new Date(now + 1), revokedAt: null }, now), undefined);
  t.equal(keyUnusableReason({ id: "k", expiresAt: new Date(now), revokedAt: null }, now), "API key k expired at 2026-01-01T00:00:00.000Z");
  t.equal(keyUnusableReason({ id: "k", expiresAt: null, revokedAt: new Date(now) }, now), "API key k was revoked at 2026-01-01T00:00:00.000Z");
  t.equal(checkNamespaceName("acme-prod_2"), undefined);
  for (const bad of ["", "Acme", "1acme", "a".repeat(64), "acme.prod", "ac me"]) t.ok(checkNamespaceName(bad) !== undefined, JSON.stringify(bad));
});
