import { defineEntity, p } from "@mikro-orm/postgresql";

const NamespaceSchema = defineEntity({
  name: "Namespace",
  tableName: "namespace",
  properties: {
    name: p.text().primary(),
    createdAt: p.datetime().defaultRaw("now()"),
    eventSeq: p.bigint("string").defaultRaw("0"),
    createdBy: p.text().nullable(),
  },
});

/** A tenant: every job type, task and worker belongs to exactly one. */
export class Namespace extends NamespaceSchema.class {}
NamespaceSchema.setClass(Namespace);
