import { defineEntity, p } from "@mikro-orm/postgresql";

const TaskDependencySchema = defineEntity({
  name: "TaskDependency",
  tableName: "task_dependency",
  properties: {
    childId: p.bigint("string").primary(),
    parentId: p.bigint("string").primary(),
  },
  primaryKeys: ["childId", "parentId"],
});

/**
 * An edge of a task graph: the child waits for the parent to succeed (migration 0030). Written by
 * Submit, read by the settle trigger and the claim; deleted with the child by retention.
 */
export class TaskDependency extends TaskDependencySchema.class {}
TaskDependencySchema.setClass(TaskDependency);
