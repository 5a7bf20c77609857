/**
 * Roles and the one table that says which roles may call each procedure. The request gate
 * (src/server/auth-gate.ts) consults it before a request body is read; a procedure missing from
 * the table is refused (fail closed), and a test checks every RPC of every service is listed.
 */

/** What an API key may do; admin may do everything within its namespace. */
export const ROLES = ["producer", "worker", "watcher", "admin"] as const;
export type Role = (typeof ROLES)[number];

/** The namespace whose admin keys are operators: they may create and list namespaces and manage any namespace's keys. */
export const OPERATOR_NAMESPACE = "default";

/**
 * Who may call a procedure: any key holding one of the roles (admin always may), only operators,
 * or anyone without a key (health probes).
 */
export type Access = { roles: readonly Role[] } | { operator: true } | { public: true };

const producer = { roles: ["producer"] } as const;
const worker = { roles: ["worker"] } as const;
const reader = { roles: ["producer", "watcher"] } as const;
const anyRole = { roles: ["producer", "worker", "watcher"] } as const;
const admin = { roles: ["admin"] } as const;
const operator = { operator: true } as const;
const open = { public: true } as const;

/** Every procedure, by "package.Service/Method". */
export const PROCEDURE_ACCESS = {
  "taskwire.v1.TaskService/Submit": producer,
  "taskwire.v1.TaskService/SubmitBatch": producer,
  "taskwire.v1.TaskService/Cancel": producer,
  "taskwire.v1.TaskService/Retry": producer,
  "taskwire.v1.TaskService/WaitTask": producer,
  "taskwire.v1.TaskService/GetTask": reader,
  "taskwire.v1.TaskService/ListTasks": reader,
  "taskwire.v1.TaskService/StreamStatus": reader,
  "taskwire.v1.JobTypeService/RegisterJobType": worker,
  "taskwire.v1.JobTypeService/GetJobType": anyRole,
  "taskwire.v1.JobTypeService/ListJobTypes": anyRole,
  "taskwire.v1.WorkerService/Claim": worker,
  "taskwire.v1.WorkerService/ClaimTasks": worker,
  "taskwire.v1.WorkerService/Heartbeat": worker,
  "taskwire.v1.WorkerService/ReportProgress": worker,
  "taskwire.v1.WorkerService/SaveCheckpoint": worker,
  "taskwire.v1.WorkerService/ReleaseTask": worker,
  "taskwire.v1.WorkerService/CompleteTask": worker,
  "taskwire.v1.WorkerService/FailTask": worker,
  "taskwire.v1.WorkerService/ListWorkers": anyRole,
  // Schedules submit tasks: producers manage them; watchers may read them.
  "taskwire.v1.ScheduleService/CreateSchedule": producer,
  "taskwire.v1.ScheduleService/GetSchedule": reader,
  "taskwire.v1.ScheduleService/ListSchedules": reader,
  "taskwire.v1.ScheduleService/PauseSchedule": producer,
  "taskwire.v1.ScheduleService/ResumeSchedule": producer,
  "taskwire.v1.ScheduleService/DeleteSchedule": producer,
  "taskwire.v1.AdminService/CreateNamespace": operator,
  "taskwire.v1.AdminService/ListNamespaces": operator,
  "taskwire.v1.AdminService/CreateApiKey": admin,
  "taskwire.v1.AdminService/ListApiKeys": admin,
  "taskwire.v1.AdminService/RevokeApiKey": admin,
  "taskwire.v1.AdminService/ListAuditEvents": admin,
  "grpc.health.v1.Health/Check": open,
  "grpc.health.v1.Health/Watch": open,
} as const satisfies Record<string, Access>;

/** What a caller is allowed, as far as the procedure table cares. */
export interface Grant {
  namespace: string;
  roles: ReadonlySet<Role>;
}

/** True for an admin of the operator namespace. */
export function isOperator(grant: Grant): boolean {
  return grant.namespace === OPERATOR_NAMESPACE && grant.roles.has("admin");
}

/** The access rule of a procedure; undefined for one the table does not list (refused). */
export function accessOf(procedure: string): Access | undefined {
  return (PROCEDURE_ACCESS as Record<string, Access>)[procedure];
}

/** True when the procedure may be called without a key. */
export function isPublic(procedure: string): boolean {
  const access = accessOf(procedure);
  return access !== undefined && "public" in access;
}

/** Why the grant may not call the procedure (naming the role it lacks), or undefined when it may. */
export function deniedReason(procedure: string, grant: Grant): string | undefined {
  const access = accessOf(procedure);
  if (access === undefined) return `${procedure} is not a procedure this server grants to any role`;
  if ("public" in access) return undefined;
  if ("operator" in access) {
    return isOperator(grant) ? undefined : `${procedure} needs an operator key: the admin role in namespace "${OPERATOR_NAMESPACE}"`;
  }
  if (grant.roles.has("admin") || access.roles.some((role) => grant.roles.has(role))) return undefined;
  const needed = access.roles.length === 1 ? `the ${access.roles[0]} role` : `one of the roles ${access.roles.join(", ")}`;
  const held = grant.roles.size === 0 ? "no role" : `only ${[...grant.roles].join(", ")}`;
  return `${procedure} needs ${needed} (or admin); this key has ${held}`;
}

/** Parses a comma-separated role list ("producer,watcher"); throws a message naming the bad one. */
export function parseRoles(text: string): Role[] {
  const roles = text.split(",").map((r) => r.trim()).filter((r) => r !== "");
  if (roles.length === 0) throw new Error(`no role given; use one or more of ${ROLES.join(", ")}`);
  for (const role of roles) {
    if (!(ROLES as readonly string[]).includes(role)) throw new Error(`${JSON.stringify(role)} is not a role; use one or more of ${ROLES.join(", ")}`);
  }
  return [...new Set(roles)] as Role[];
}
