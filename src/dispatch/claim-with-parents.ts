/**
 * A claim as workers receive it: the claim statement, then, only when it claimed tasks with
 * dependencies, their parents' outputs. Claims of ordinary tasks are the one statement.
 */
import { dependencyDeletedReason } from "../core/dependencies.js";
import type { Assignment } from "../core/task.js";
import type { Db } from "../store/db.js";
import { taskClaimAvailable } from "../store/sql/task-claim-available.js";
import { taskFailBatch } from "../store/sql/task-fail-batch.js";
import { taskParentOutputs } from "../store/sql/task-parent-outputs.js";
import { taskReleaseBatch } from "../store/sql/task-release-batch.js";

/** Claims up to `limit` ready tasks for the worker (see taskClaimAvailable), with their parents' outputs. */
export async function claimWithParents(
  db: Db,
  params: { namespace: string; jobTypes: readonly string[]; limit: number; workerId: string },
): Promise<Assignment[]> {
  return withParentOutputs(db, await taskClaimAvailable(db, params));
}

/**
 * Adds their parents' outputs to claimed tasks that have dependencies (one statement, only when
 * there are any). A task one of whose dependencies is gone is not delivered: its handler would get
 * fewer parents than the task named, with nothing to tell it so. It ends DEAD, naming that
 * dependency (a permanent failure of this attempt; its own dependents end DEAD with it), and the
 * claim returns the rest.
 */
export async function withParentOutputs(db: Db, claimed: Assignment[]): Promise<Assignment[]> {
  const dependent = claimed.filter((a) => a.hasDependencies);
  if (dependent.length === 0) return claimed;
  try {
    const parents = await taskParentOutputs(db, dependent.map((a) => a.taskId));
    const orphaned = new Set<Assignment>();
    for (const a of dependent) {
      const found = parents.get(a.taskId);
      a.parents = found?.parents ?? [];
      if (found !== undefined && found.missing.length > 0) orphaned.add(a);
    }
    if (orphaned.size === 0) return claimed;
    await taskFailBatch(
      db,
      [...orphaned].map((a) => ({
        namespace: a.namespace,
        taskId: a.taskId,
        attempt: a.attempt,
        leaseToken: a.leaseToken,
        error: dependencyDeletedReason(parents.get(a.taskId)!.missing[0]!),
        nonRetryable: true,
        outcome: "failed" as const,
        jitter: 0,
      })),
    );
    return claimed.filter((a) => !orphaned.has(a));
  } catch (error) {
    // The claim committed but cannot be delivered whole: hand the tasks back (the attempts do not
    // count) rather than leave them leased until the sweeper calls them lost. If that fails too,
    // the sweeper does take them back when their leases end.
    await taskReleaseBatch(db, claimed.map((a) => ({ ...a, reason: "not delivered: could not read its dependencies' outputs" }))).catch(() => undefined);
    throw error;
  }
}
