/**
 * Typed payloads in JSON, namespace by namespace. Two namespaces may each define a message of the
 * same name (acme.v1.Msg) differently: each reads and writes its own payloads with its own
 * definition, whatever the other registers and in whichever order, on this replica and on one that
 * loaded the definitions from the database. (One server-wide registry used to let a later
 * registration in one namespace change how another's payloads were read and shown.)
 */
import { create, fromBinary, createFileRegistry, type DescMessage } from "@bufbuild/protobuf";
import { FieldDescriptorProto_Label, FieldDescriptorProto_Type, FileDescriptorProtoSchema, FileDescriptorSetSchema, type FileDescriptorSet } from "@bufbuild/protobuf/wkt";
import t from "tap";
import { clientsFor, createTestKey, startTestServer } from "../helpers/server.js";

const s = await startTestServer(t);
const database = s.server.engine.database;
const alpha = await createTestKey(database, "alpha", ["admin"]);
const beta = await createTestKey(database, "beta", ["admin"]);
const gamma = await createTestKey(database, "gamma", ["admin"]);

/** A descriptor set defining acme.v1.Msg with one string field of this name. */
function msgWithField(field: string): FileDescriptorSet {
  const file = create(FileDescriptorProtoSchema, {
    name: "acme/v1/msg.proto",
    package: "acme.v1",
    syntax: "proto3",
    messageType: [{ name: "Msg", field: [{ name: field, jsonName: field, number: 1, type: FieldDescriptorProto_Type.STRING, label: FieldDescriptorProto_Label.OPTIONAL }] }],
  });
  return create(FileDescriptorSetSchema, { file: [file] });
}
const schemaOf = (set: FileDescriptorSet): DescMessage => createFileRegistry(set).getMessage("acme.v1.Msg")!;
const alphaMsg = msgWithField("name");
const betaMsg = msgWithField("password");

/** A Connect JSON call (what curl does) with this key, on this server. */
async function post(url: string, token: string, method: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${url}/taskwire.v1.${method}`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${token}` }, body: JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}
const msgJson = (fields: Record<string, string>) => ({ "@type": "type.googleapis.com/acme.v1.Msg", ...fields });
/** The stored input of a task, decoded with a definition of acme.v1.Msg (binary: no JSON registry involved). */
async function storedInput(token: string, id: string, schema: DescMessage): Promise<unknown> {
  const task = (await clientsFor(s.url, token).tasks.getTask({ id })).task!;
  const { $typeName, ...fields } = fromBinary(schema, task.input!.value) as Record<string, unknown>;
  void $typeName;
  return fields;
}
const submitJson = async (url: string, token: string, jobType: string, fields: Record<string, string>) =>
  post(url, token, "TaskService/Submit", { task: { jobType, input: msgJson(fields) } });
const getJson = async (url: string, token: string, id: string) => (await post(url, token, "TaskService/GetTask", { id })).json.task as { input: unknown } | undefined;

t.test("a later registration in another namespace changes nothing in this one", async (t) => {
  await clientsFor(s.url, alpha.token).jobTypes.registerJobType({ name: "a", inputType: "acme.v1.Msg", descriptors: alphaMsg });
  const first = await submitJson(s.url, alpha.token, "a", { name: "ada" });
  t.equal(first.status, 200);
  const firstId = (first.json.task as { id: string }).id;

  await clientsFor(s.url, beta.token).jobTypes.registerJobType({ name: "b", inputType: "acme.v1.Msg", descriptors: betaMsg });
  const second = await submitJson(s.url, alpha.token, "a", { name: "bob" });
  t.equal(second.status, 200, "alpha's JSON submit still reads its own field");
  t.same(await storedInput(alpha.token, (second.json.task as { id: string }).id, schemaOf(alphaMsg)), { name: "bob" }, "and the value was stored, not dropped");
  t.same((await getJson(s.url, alpha.token, firstId))?.input, msgJson({ name: "ada" }), "alpha's task is shown with alpha's definition");
  const foreign = await submitJson(s.url, alpha.token, "a", { password: "x" });
  t.match(foreign, { status: 400, json: { code: "invalid_argument", message: /key "password" is unknown/ } }, "beta's field is unknown in alpha");

  const theirs = await submitJson(s.url, beta.token, "b", { password: "secret" });
  t.equal(theirs.status, 200);
  const theirsId = (theirs.json.task as { id: string }).id;
  t.same(await storedInput(beta.token, theirsId, schemaOf(betaMsg)), { password: "secret" });
  t.same((await getJson(s.url, beta.token, theirsId))?.input, msgJson({ password: "secret" }), "beta's task is shown with beta's definition");
  t.same((await getJson(s.url, alpha.token, firstId))?.input, msgJson({ name: "ada" }), "and alpha's still with alpha's, after beta's calls");
});

t.test("a namespace without descriptors cannot use another's to render JSON", async (t) => {
  const gammaClients = clientsFor(s.url, gamma.token);
  await gammaClients.jobTypes.registerJobType({ name: "g", inputType: "acme.v1.Msg" });
  const task = (await gammaClients.tasks.submit({ task: { jobType: "g", input: { $typeName: "google.protobuf.Any", typeUrl: "type.googleapis.com/acme.v1.Msg", value: new Uint8Array([10, 1, 120]) } } })).task!;
  const got = await post(s.url, gamma.token, "TaskService/GetTask", { id: task.id });
  t.equal(got.status, 400);
  t.match(got.json, { code: "failed_precondition", message: /is a acme\.v1\.Msg, which the server cannot render as JSON/ });
  t.equal((await submitJson(s.url, gamma.token, "g", { name: "x" })).status, 400, "nor read JSON with them");
});

t.test("a replica that loaded the definitions from the database keeps them apart too", async (t) => {
  const replica = await startTestServer(t, { databaseUrl: s.databaseUrl });
  const mine = await submitJson(replica.url, alpha.token, "a", { name: "cy" });
  t.equal(mine.status, 200);
  const id = (mine.json.task as { id: string }).id;
  t.same((await getJson(replica.url, alpha.token, id))?.input, msgJson({ name: "cy" }));
  const theirs = await submitJson(replica.url, beta.token, "b", { password: "pw" });
  t.equal(theirs.status, 200);
  t.same((await getJson(replica.url, beta.token, (theirs.json.task as { id: string }).id))?.input, msgJson({ password: "pw" }));
});
