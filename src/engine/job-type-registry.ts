/**
 * Job types by (namespace, name), read through a short-lived cache: Submit and every report need
 * one, and they change rarely. Registering through this replica refreshes its entry at once; other
 * replicas see the change within the cache's lifetime.
 */
import { type MikroORM, UniqueConstraintViolationException } from "@mikro-orm/postgresql";
import type { JobTypeRecord } from "../core/task.js";
import { TaskwireError } from "../core/errors.js";
import { JobType } from "../store/entities/index.js";

/** How long a cached job type is trusted (ms). */
const CACHE_MS = 2_000;

/** What RegisterJobType writes. */
export type JobTypeInput = Omit<JobTypeRecord, "createdAt" | "updatedAt">;

function toRecord(row: JobType): JobTypeRecord {
  return {
    namespace: row.namespace,
    name: row.name,
    inputType: row.inputType,
    outputType: row.outputType,
    descriptors: row.descriptors ?? null,
    defaultPriority: row.defaultPriority,
    defaultMaxAttempts: row.defaultMaxAttempts,
    defaultTimeoutMs: row.defaultTimeoutMs ?? null,
    backoffBaseMs: row.backoffBaseMs,
    backoffCapMs: row.backoffCapMs,
    leaseMs: row.leaseMs,
    createdAt: new Date(row.createdAt),
    updatedAt: new Date(row.updatedAt),
  };
}

/** Reads and writes job types through MikroORM, with a cache for the hot paths. */
export class JobTypeRegistry {
  private readonly cache = new Map<string, { record: JobTypeRecord | undefined; expires: number }>();

  constructor(private readonly orm: MikroORM) {}

  /** The job type, or undefined when the namespace has none of that name. */
  async find(namespace: string, name: string): Promise<JobTypeRecord | undefined> {
    const key = `${namespace}\u0000${name}`;
    const hit = this.cache.get(key);
    if (hit !== undefined && hit.expires > Date.now()) return hit.record;
    const row = await this.orm.em.fork().findOne(JobType, { namespace, name });
    const record = row === null ? undefined : toRecord(row);
    this.cache.set(key, { record, expires: Date.now() + CACHE_MS });
    return record;
  }

  /** The job type, or NOT_FOUND naming it. */
  async get(namespace: string, name: string): Promise<JobTypeRecord> {
    const record = await this.find(namespace, name);
    if (record === undefined) {
      throw new TaskwireError("NOT_FOUND", `job type ${JSON.stringify(name)} is not registered in namespace ${JSON.stringify(namespace)}; register it with RegisterJobType first`);
    }
    return record;
  }

  /** Creates or updates a job type; `created` tells which. */
  async register(input: JobTypeInput): Promise<{ record: JobTypeRecord; created: boolean }> {
    try {
      return await this.upsert(input);
    } catch (error) {
      // Two first registrations raced; the loser finds the winner's row and updates it.
      if (error instanceof UniqueConstraintViolationException) return this.upsert(input);
      throw error;
    }
  }

  private async upsert(input: JobTypeInput): Promise<{ record: JobTypeRecord; created: boolean }> {
    const em = this.orm.em.fork();
    const result = await em.transactional(async (tx) => {
      const existing = await tx.findOne(JobType, { namespace: input.namespace, name: input.name }, { lockMode: 4 /* PESSIMISTIC_WRITE */ });
      const fields = {
        inputType: input.inputType,
        outputType: input.outputType,
        descriptors: input.descriptors === null ? null : Buffer.from(input.descriptors),
        defaultPriority: input.defaultPriority,
        defaultMaxAttempts: input.defaultMaxAttempts,
        defaultTimeoutMs: input.defaultTimeoutMs,
        backoffBaseMs: input.backoffBaseMs,
        backoffCapMs: input.backoffCapMs,
        leaseMs: input.leaseMs,
      };
      if (existing !== null) {
        tx.assign(existing, { ...fields, updatedAt: new Date() });
        return { row: existing, created: false };
      }
      const row = tx.create(JobType, { namespace: input.namespace, name: input.name, ...fields, createdAt: new Date(), updatedAt: new Date() });
      return { row, created: true };
    });
    const record = toRecord(result.row);
    this.cache.set(`${input.namespace}\u0000${input.name}`, { record, expires: Date.now() + CACHE_MS });
    return { record, created: result.created };
  }

  /** One page of the namespace's job types by name, after `afterName`. */
  async list(namespace: string, afterName: string | null, limit: number): Promise<JobTypeRecord[]> {
    const rows = await this.orm.em.fork().find(
      JobType,
      afterName === null ? { namespace } : { namespace, name: { $gt: afterName } },
      { orderBy: { name: "asc" }, limit },
    );
    return rows.map(toRecord);
  }
}
