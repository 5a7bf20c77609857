/**
 * A claim as workers receive it: the claim statement, then, only when it claimed tasks with
 * dependencies, their parents' outputs. Claims of ordinary tasks are the one statement.
 */
import type { Assignment } from "../core/task.js";
import type { Db } from "../store/db.js";
import { taskClaimAvailable } from "../store/sql/task-claim-available.js";
import { taskParentOutputs } from "../store/sql/task-parent-outputs.js";
import { taskReleaseBatch } from "../store/sql/task-release-batch.js";

/** Claims up to `limit` ready tasks for the worker (see taskClaimAvailable), with their parents' outputs. */
export async function claimWithParents(
  db: Db,
  params: { namespace: string; jobTypes: readonly string[]; limit: number; workerId: string },
): Promise<Assignment[]> {
  return withParentOutputs(db, await taskClaimAvailable(db, params));
}

/** Adds their parents' outputs to claimed tasks that have dependencies (one statement, only when there are any). */
export async function withParentOutputs(db: Db, claimed: Assignment[]): Promise<Assignment[]> {
  const dependent = claimed.filter((a) => a.hasDependencies);
  if (dependent.length === 0) return claimed;
  try {
    const parents = await taskParentOutputs(db, dependent.map((a) => a.taskId));
    for (const a of dependent) a.parents = parents.get(a.taskId) ?? [];
    return claimed;
  } catch (error) {
    // The claim committed but cannot be delivered whole: hand the tasks back (the attempts do not
    // count) rather than leave them leased until the sweeper calls them lost. If that fails too,
    // the sweeper does take them back when their leases end.
    await taskReleaseBatch(db, claimed.map((a) => ({ ...a, reason: "not delivered: could not read its dependencies' outputs" }))).catch(() => undefined);
    throw error;
  }
}
