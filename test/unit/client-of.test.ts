/** The client a remote address stands for, which anonymous streams are counted by. */
import t from "tap";
import { clientOf } from "../../src/auth/principal.js";

t.test("IPv4, also IPv4-mapped, as it is", async (t) => {
  t.equal(clientOf("203.0.113.7"), "203.0.113.7");
  t.equal(clientOf("::ffff:203.0.113.7"), "203.0.113.7");
  t.equal(clientOf("::FFFF:203.0.113.7"), "203.0.113.7");
});

t.test("IPv6 by its /64, however it is written", async (t) => {
  const net = "2001:db8:1:2::/64";
  for (const address of ["2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:0db8:0001:0002:0000:0000:0000:0009", "2001:DB8:1:2::a%eth0"]) {
    t.equal(clientOf(address), net, address);
  }
  t.equal(clientOf("2001:db8:1:3::1"), "2001:db8:1:3::/64", "another /64 is another client");
  t.equal(clientOf("::1"), "0:0:0:0::/64");
  t.equal(clientOf("fe80::1"), "fe80:0:0:0::/64");
});

t.test("anything else as given", async (t) => {
  t.equal(clientOf(""), "");
  t.equal(clientOf("1:2:3"), "1:2:3");
  t.equal(clientOf("1::2::3"), "1::2::3");
  t.equal(clientOf("1:2:3:4:5:6:7:8:9"), "1:2:3:4:5:6:7:8:9");
  t.equal(clientOf("g::1"), "g::1");
});
