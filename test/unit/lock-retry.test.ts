/** Bounded retries of lock conflicts, and how one that persists is answered. */
import { Code } from "@connectrpc/connect";
import t from "tap";
import { toConnectError } from "../../src/server/error-mapping.js";
import { isLockConflict, withLockRetries } from "../../src/store/lock-retry.js";
import { testLogger } from "../helpers/logger.js";

const conflict = (code: string) => Object.assign(new Error("deadlock detected"), { code });

t.test("only deadlocks and serialization failures are retried, a bounded number of times", async (t) => {
  t.ok(isLockConflict(conflict("40P01")));
  t.ok(isLockConflict(conflict("40001")));
  t.notOk(isLockConflict(conflict("23505")), "a unique violation is not a lock conflict");
  t.notOk(isLockConflict(new Error("plain")));

  let calls = 0;
  t.equal(await withLockRetries(async () => (++calls < 3 ? Promise.reject(conflict("40P01")) : "done")), "done");
  t.equal(calls, 3, "retried until it worked");

  calls = 0;
  await t.rejects(withLockRetries(async () => { calls++; throw conflict("40001"); }, 4), { code: "40001" });
  t.equal(calls, 4, "the last conflict is thrown after the bound");

  calls = 0;
  await t.rejects(withLockRetries(async () => { calls++; throw conflict("23505"); }), { code: "23505" });
  t.equal(calls, 1, "anything else is thrown at once");
});

t.test("a conflict that outlasted the retries is UNAVAILABLE with a message saying to retry, not INTERNAL", async (t) => {
  const error = toConnectError(conflict("40P01"), testLogger(), {});
  t.equal(error.code, Code.Unavailable);
  t.match(error.rawMessage, /lock conflict with concurrent work; nothing was changed, retry it/);
});
