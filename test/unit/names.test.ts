import t from "tap";
import { MESSAGE_NAME_PATTERN, NAME_PATTERN, NAME_RULE, checkName } from "../../src/core/names.js";

t.test("valid names", async (t) => {
  const valid = ["a", "Z", "email.send", "email_send", "billing:invoice-create", "a1", "A.b_c:d-e.9", `a${"b".repeat(127)}`];
  for (const name of valid) {
    t.equal(checkName(name), undefined, JSON.stringify(name));
    t.ok(NAME_PATTERN.test(name));
  }
});

t.test("the empty name has its own message", async (t) => {
  t.equal(checkName(""), `must not be empty; use ${NAME_RULE}`);
});

t.test("invalid names", async (t) => {
  const invalid: [reason: string, name: string][] = [
    ["too long (129 characters)", `a${"b".repeat(128)}`],
    ["leading digit", "1email"],
    ["leading dot", ".email"],
    ["leading dash", "-email"],
    ["leading underscore", "_email"],
    ["unicode letter", "émail"],
    ["unicode later on", "email.sénd"],
    ["CJK", "名前"],
    ["emoji", "a😀"],
    ["inner space", "email send"],
    ["leading space", " email"],
    ["trailing space", "email "],
    ["trailing newline", "email\n"],
    ["tab", "email\tsend"],
    ["slash", "email/send"],
    ["at sign", "email@send"],
  ];
  for (const [reason, name] of invalid) {
    const message = checkName(name);
    t.type(message, "string", reason);
    t.ok(message?.startsWith(`${JSON.stringify(name)} is not a valid name`), `${reason}: quotes the name`);
    t.ok(message?.endsWith(NAME_RULE), `${reason}: states the rule`);
  }
});

t.test("a very long name is cut in the message", async (t) => {
  const message = checkName(`a${"b".repeat(10_000)}`) ?? "";
  t.ok(message.length < 400, `message of ${message.length} characters`);
});

t.test("protobuf message names", async (t) => {
  for (const name of ["SendEmail", "acme.mail.v1.SendEmail", "_x._y", "google.protobuf.Empty"]) {
    t.ok(MESSAGE_NAME_PATTERN.test(name), name);
  }
  for (const name of ["", ".acme.Send", "acme..Send", "acme.Send.", "1acme.Send", "acme.1Send", "acme.Se-nd", "acme. Send"]) {
    t.notOk(MESSAGE_NAME_PATTERN.test(name), JSON.stringify(name));
  }
});
