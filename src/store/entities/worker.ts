import { defineEntity, p } from "@mikro-orm/postgresql";

const WorkerSchema = defineEntity({
  name: "Worker",
  tableName: "worker",
  properties: {
    namespace: p.text().primary(),
    id: p.text().primary(),
    jobTypes: p.array(),
    credits: p.integer(),
    connectedAt: p.datetime().defaultRaw("now()"),
    lastSeenAt: p.datetime().defaultRaw("now()"),
    disconnectedAt: p.datetime().nullable(),
  },
  primaryKeys: ["namespace", "id"],
});

/** A worker that has connected: its job types, credits and when it was last seen. */
export class Worker extends WorkerSchema.class {}
WorkerSchema.setClass(Worker);
