import t, { type Test } from "tap";
import { TaskwireError } from "../../src/core/errors.js";
import { decodePageToken, encodePageToken, filterFingerprint } from "../../src/core/page-token.js";

const filters = { namespace: "default", jobType: "email.send", states: ["pending"] };

t.test("round trip", async (t) => {
  const fingerprint = filterFingerprint(filters);
  for (const key of ["1", "9223372036854775807", "", "ключ 🔑", 'with "quotes" and \\ slashes']) {
    const token = encodePageToken(key, fingerprint);
    t.match(token, /^[A-Za-z0-9_-]+$/, `${JSON.stringify(key)}: URL-safe token`);
    t.equal(decodePageToken(token, fingerprint), key, JSON.stringify(key));
  }
});

t.test("fingerprints are stable, short and filter-specific", async (t) => {
  t.equal(filterFingerprint(filters), filterFingerprint({ ...filters }));
  t.equal(filterFingerprint(filters).length, 16);
  t.not(filterFingerprint(filters), filterFingerprint({ ...filters, states: ["running"] }));
  t.not(filterFingerprint(null), filterFingerprint({}));
});

/** Asserts that `fn` throws a TaskwireError with code INVALID_ARGUMENT and a message matching `message`. */
function throwsInvalidArgument(t: Test, fn: () => unknown, message: RegExp, label: string): void {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  t.ok(thrown instanceof TaskwireError, `${label}: throws a TaskwireError`);
  t.match(thrown, { code: "INVALID_ARGUMENT", message }, label);
}

t.test("a token made for other filters is rejected", async (t) => {
  const token = encodePageToken("42", filterFingerprint(filters));
  throwsInvalidArgument(t, () => decodePageToken(token, filterFingerprint({ ...filters, jobType: "other" })), /^page_token: was issued for different filters/, "other filters");
  t.throws(() => decodePageToken(token, "wrong"), { name: "TaskwireError", code: "INVALID_ARGUMENT" });
});

t.test("garbage is rejected", async (t) => {
  const fingerprint = filterFingerprint(filters);
  const b64 = (text: string) => Buffer.from(text).toString("base64url");
  const garbage: [string, string][] = [
    ["empty", ""],
    ["not base64", "!!!***"],
    ["base64 of text", b64("hello")],
    ["JSON null", b64("null")],
    ["JSON number", b64("42")],
    ["JSON string", b64('"42"')],
    ["no key", b64(JSON.stringify({ f: fingerprint }))],
    ["numeric key", b64(JSON.stringify({ k: 42, f: fingerprint }))],
    ["truncated", encodePageToken("42", fingerprint).slice(0, 10)],
  ];
  for (const [label, token] of garbage) {
    throwsInvalidArgument(t, () => decodePageToken(token, fingerprint), /^page_token: is not a token this server issued/, label);
  }
  throwsInvalidArgument(t, () => decodePageToken(b64(JSON.stringify({ k: "1" })), fingerprint), /different filters/, "no fingerprint");
});
