/**
 * Page tokens are not signed: their fingerprint is a hash anyone can compute, so a client can
 * forge one with any key. Every List RPC must refuse a key its own field would refuse, as
 * INVALID_ARGUMENT, never let it reach PostgreSQL (a NUL byte answered INTERNAL, or UNAVAILABLE
 * through MikroORM, which clients retry forever; a task id past bigint answered INTERNAL).
 */
import { Code } from "@connectrpc/connect";
import t from "tap";
import { encodePageToken, filterFingerprint } from "../../src/core/page-token.js";
import { jsonAny } from "../helpers/payload.js";
import { rejection } from "../helpers/rejection.js";
import { clientsFor, startTestServer } from "../helpers/server.js";

const s = await startTestServer(t);
const { admin } = clientsFor(s.url, undefined);

const NOT_ISSUED = /^page_token: is not a token this server issued; pass next_page_token from the previous response/;
const taskFilter = { namespace: "default", jobTypes: [], states: [], workerId: null, createdAfter: null, createdBefore: null };

/** Each List RPC, the filters its fingerprint is made of (for the default request), and keys its field refuses. */
const LISTS: { rpc: string; fingerprint: unknown; keys: string[]; list: (pageToken: string) => Promise<unknown> }[] = [
  { rpc: "ListJobTypes", fingerprint: { namespace: "default" }, keys: ["a\u0000", "", "1abc", "x".repeat(129)], list: (pageToken) => s.jobTypes.listJobTypes({ pageToken }) },
  { rpc: "ListSchedules", fingerprint: { namespace: "default", kind: "schedules" }, keys: ["a\u0000", "", "a b"], list: (pageToken) => s.schedules.listSchedules({ pageToken }) },
  { rpc: "ListWorkers", fingerprint: { namespace: "default", includeDisconnected: false }, keys: ["a\u0000", "", "w/1"], list: (pageToken) => s.workers.listWorkers({ pageToken }) },
  { rpc: "ListNamespaces", fingerprint: { namespaces: true }, keys: ["a\u0000", "", "Acme", "a".repeat(64)], list: (pageToken) => admin.listNamespaces({ pageToken }) },
  { rpc: "ListTasks", fingerprint: taskFilter, keys: ["9999999999999999999", "9223372036854775808", "0", "-1", "1\u0000"], list: (pageToken) => s.tasks.listTasks({ pageToken }) },
  { rpc: "ListAuditEvents", fingerprint: { audit: null }, keys: ["9999999999999999999", "0", "a\u0000"], list: (pageToken) => admin.listAuditEvents({ pageToken }) },
];

for (const { rpc, fingerprint, keys, list } of LISTS) {
  t.test(`${rpc}: a forged token is INVALID_ARGUMENT saying so`, async (t) => {
    for (const key of keys) {
      const error = await rejection(() => list(encodePageToken(key, filterFingerprint(fingerprint))));
      t.equal(Code[error.code], "InvalidArgument", `${JSON.stringify(key)}: ${error.rawMessage}`);
      t.match(error.rawMessage, NOT_ISSUED, `${JSON.stringify(key)}: the message says what is wrong and what to pass`);
    }
  });
}

t.test("ListApiKeys: a forged token is INVALID_ARGUMENT naming page_token", async (t) => {
  const error = await rejection(() => admin.listApiKeys({ pageToken: encodePageToken("a\u0000", filterFingerprint({ keys: "default", inactive: false })) }));
  t.equal(Code[error.code], "InvalidArgument", error.rawMessage);
  t.match(error.rawMessage, /^page_token: .* is not a key id/);
});

t.test("tokens the server issued still page through", async (t) => {
  await s.jobTypes.registerJobType({ name: "forged.a" });
  await s.jobTypes.registerJobType({ name: "forged.b" });
  const firstTypes = await s.jobTypes.listJobTypes({ pageSize: 1 });
  const nextTypes = await s.jobTypes.listJobTypes({ pageSize: 1, pageToken: firstTypes.nextPageToken });
  t.same([...firstTypes.jobTypes, ...nextTypes.jobTypes].map((j) => j.name), ["forged.a", "forged.b"], "job types");

  await s.tasks.submitBatch({ tasks: [{ jobType: "forged.a", input: jsonAny(1) }, { jobType: "forged.a", input: jsonAny(2) }] });
  const firstTasks = await s.tasks.listTasks({ pageSize: 1 });
  const nextTasks = await s.tasks.listTasks({ pageSize: 1, pageToken: firstTasks.nextPageToken });
  t.equal(nextTasks.tasks.length, 1, "tasks");
  t.not(nextTasks.tasks[0]!.id, firstTasks.tasks[0]!.id);

  await admin.createNamespace({ name: "forged-ns" });
  const firstNamespaces = await admin.listNamespaces({ pageSize: 1 });
  const nextNamespaces = await admin.listNamespaces({ pageSize: 1, pageToken: firstNamespaces.nextPageToken });
  t.equal(nextNamespaces.namespaces.length, 1, "namespaces");
  t.not(nextNamespaces.namespaces[0]!.name, firstNamespaces.namespaces[0]!.name);
});
