/** decodePageKey: a token's key must pass the check of the field it stands for, since anyone can forge a token. */
import t from "tap";
import { decodePageKey, encodePageToken, filterFingerprint, isNameKey, isNamespaceKey } from "../../src/core/page-token.js";
import { isTaskId } from "../../src/core/task-id.js";

const fingerprint = filterFingerprint({ namespace: "default" });
const token = (key: string) => encodePageToken(key, fingerprint);
const NOT_ISSUED = /^page_token: is not a token this server issued; pass next_page_token from the previous response, or empty for the first page$/;

t.test("valid keys come back as they went in", async (t) => {
  t.equal(decodePageKey(token("email.send"), fingerprint, isNameKey), "email.send");
  t.equal(decodePageKey(token("acme-prod"), fingerprint, isNamespaceKey), "acme-prod");
  t.equal(decodePageKey(token("9223372036854775807"), fingerprint, isTaskId), "9223372036854775807");
});

t.test("keys their field would refuse are INVALID_ARGUMENT, as an unknown token", async (t) => {
  const forged: [string, (key: string) => boolean][] = [
    ["a\u0000", isNameKey],
    ["", isNameKey],
    ["x".repeat(129), isNameKey],
    ["a\u0000", isNamespaceKey],
    ["Acme", isNamespaceKey],
    ["9999999999999999999", isTaskId],
    ["9223372036854775808", isTaskId],
    ["0", isTaskId],
  ];
  for (const [key, check] of forged) {
    t.throws(() => decodePageKey(token(key), fingerprint, check), { name: "TaskwireError", code: "INVALID_ARGUMENT", message: NOT_ISSUED }, `${check.name}: ${JSON.stringify(key)}`);
  }
});

t.test("the token's own checks come first", async (t) => {
  t.throws(() => decodePageKey(encodePageToken("email.send", "other"), fingerprint, isNameKey), { code: "INVALID_ARGUMENT", message: /^page_token: was issued for different filters/ });
  t.throws(() => decodePageKey("!!!", fingerprint, isNameKey), { code: "INVALID_ARGUMENT", message: NOT_ISSUED });
});
