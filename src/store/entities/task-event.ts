import { defineEntity, p } from "@mikro-orm/postgresql";

const TaskEventSchema = defineEntity({
  name: "TaskEvent",
  tableName: "task_event",
  properties: {
    namespace: p.text().primary(),
    seq: p.bigint("string").primary(),
    taskId: p.bigint("string"),
    jobType: p.text(),
    kind: p.text(),
    state: p.text(),
    previousState: p.text().nullable(),
    attempt: p.integer(),
    progress: p.double().default(0),
    progressMessage: p.text().default(""),
    error: p.text().nullable(),
    workerId: p.text().nullable(),
    at: p.datetime().defaultRaw("now()"),
    actor: p.text().nullable(),
  },
  primaryKeys: ["namespace", "seq"],
});

/**
 * A durable task event. Written only by the task triggers of migration 0003; read by
 * src/store/sql/task-event-*.ts. The entity exists for schema checks.
 */
export class TaskEvent extends TaskEventSchema.class {}
TaskEventSchema.setClass(TaskEvent);
