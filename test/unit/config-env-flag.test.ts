/** On/off environment variables: the usual words in any case, anything else refused (never read as off). */
import t from "tap";
import { defaultConfig, envFlag } from "../../src/config.js";

const flag = (value: string | undefined) => envFlag({ TASKWIRE_REQUIRE_AUTH: value }, "TASKWIRE_REQUIRE_AUTH");

t.test("on: 1, true, yes, on in any case", async (t) => {
  for (const value of ["1", "true", "TRUE", "True", "yes", "YES", "on", "On", " on "]) t.equal(flag(value), true, JSON.stringify(value));
});

t.test("off: unset, empty, 0, false, no, off in any case", async (t) => {
  for (const value of [undefined, "", "  ", "0", "false", "FALSE", "no", "No", "off", "OFF"]) t.equal(flag(value), false, JSON.stringify(value));
});

t.test("anything else is refused, naming the variable, the value and the allowed words", async (t) => {
  for (const value of ["2", "enabled", "y", "tru", "-1", "true1"]) {
    t.throws(() => flag(value), { message: `TASKWIRE_REQUIRE_AUTH is ${JSON.stringify(value)}; allowed, in any case: 1, true, yes, on (on), 0, false, no, off or empty (off)` }, JSON.stringify(value));
  }
});

t.test("defaultConfig reads TASKWIRE_REQUIRE_AUTH through it", async (t) => {
  t.equal(defaultConfig({}).requireAuth, false, "unset: off");
  for (const value of ["yes", "TRUE", "on"]) t.equal(defaultConfig({ TASKWIRE_REQUIRE_AUTH: value }).requireAuth, true, JSON.stringify(value));
  t.equal(defaultConfig({ TASKWIRE_REQUIRE_AUTH: "off" }).requireAuth, false, "off");
  t.throws(() => defaultConfig({ TASKWIRE_REQUIRE_AUTH: "maybe" }), { message: /^TASKWIRE_REQUIRE_AUTH is "maybe"; allowed/ }, "refused at startup, not read as off");
});
