/**
 * The task state machine: one table of legal transitions, mirrored in PostgreSQL by the CHECK
 * constraints of migration 0001. Every state write in the store names the state it expects to
 * leave, so a stale writer changes nothing.
 */

/** Every state a task can be in. */
export const TASK_STATES = ["waiting", "pending", "running", "succeeded", "dead", "cancelled"] as const;

/** Where a task is in its life. */
export type TaskState = (typeof TASK_STATES)[number];

/** States a task never leaves except by an explicit Retry. */
export const FINISHED_STATES = ["succeeded", "dead", "cancelled"] as const satisfies readonly TaskState[];

/** Something that moves a task from one state to another. */
export type TaskAction =
  | "unblock" // dependencies succeeded (waiting -> pending)
  | "claim" // a worker or the inline pool takes it (pending -> running)
  | "complete" // the lease holder reports success
  | "fail_retry" // the lease holder reports a retryable failure and attempts remain
  | "fail_dead" // a failure that ends the task: attempts exhausted or non-retryable
  | "release" // a draining worker hands it back without burning the attempt
  | "cancel" // a client cancels it
  | "dependency_failed" // a parent ended DEAD or CANCELLED
  | "retry" // a client re-queues a finished failure
  | "retry_waiting"; // a client re-queues a finished failure whose dependencies have not all succeeded yet

/**
 * Which states each action may start from and where it leads. The single source of truth for
 * legality: the store's guarded UPDATEs use `from` as their `WHERE state = ANY(...)`.
 */
export const TASK_TRANSITIONS = {
  unblock: { from: ["waiting"], to: "pending" },
  claim: { from: ["pending"], to: "running" },
  complete: { from: ["running"], to: "succeeded" },
  fail_retry: { from: ["running"], to: "pending" },
  fail_dead: { from: ["running"], to: "dead" },
  release: { from: ["running"], to: "pending" },
  cancel: { from: ["waiting", "pending", "running"], to: "cancelled" },
  dependency_failed: { from: ["waiting"], to: "dead" },
  retry: { from: ["dead", "cancelled"], to: "pending" },
  retry_waiting: { from: ["dead", "cancelled"], to: "waiting" },
} as const satisfies Record<TaskAction, { from: readonly TaskState[]; to: TaskState }>;

/** Every action, in a stable order (for exhaustive tests). */
export const TASK_ACTIONS = Object.keys(TASK_TRANSITIONS) as TaskAction[];

/** The states an action may start from. */
export function statesAllowing(action: TaskAction): readonly TaskState[] {
  return TASK_TRANSITIONS[action].from;
}

/** True when the task has ended (it has a finished_at). */
export function isFinished(state: TaskState): boolean {
  return (FINISHED_STATES as readonly TaskState[]).includes(state);
}

/** The result of asking whether an action applies to a state. */
export type TransitionResult = { ok: true; to: TaskState } | { ok: false; reason: string };

/** Applies an action to a state: the next state, or why the action is illegal there. */
export function transition(state: TaskState, action: TaskAction): TransitionResult {
  const rule = TASK_TRANSITIONS[action];
  if ((rule.from as readonly TaskState[]).includes(state)) return { ok: true, to: rule.to };
  return { ok: false, reason: illegalTransitionMessage(state, action) };
}

/** A message naming the current state and the states the action is allowed from. */
export function illegalTransitionMessage(state: TaskState, action: TaskAction): string {
  const allowed = TASK_TRANSITIONS[action].from.map((s) => s.toUpperCase()).join(", ");
  return `cannot ${action.replace("_", " ")} a task that is ${state.toUpperCase()}; allowed only from ${allowed}`;
}
