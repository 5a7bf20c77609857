import { defineEntity, p } from "@mikro-orm/postgresql";

const TaskAttemptSchema = defineEntity({
  name: "TaskAttempt",
  tableName: "task_attempt",
  properties: {
    taskId: p.bigint("string").primary(),
    number: p.integer().primary(),
    workerId: p.text(),
    outcome: p.text().default("running"),
    error: p.text().nullable(),
    startedAt: p.datetime().defaultRaw("now()"),
    endedAt: p.datetime().nullable(),
  },
  primaryKeys: ["taskId", "number"],
});

/** One attempt of a task (numbered from 1): who ran it, when, and how it ended. */
export class TaskAttempt extends TaskAttemptSchema.class {}
TaskAttemptSchema.setClass(TaskAttempt);
