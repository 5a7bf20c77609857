/**
 * Job types by (namespace, name), read through a short-lived cache: Submit and every report need
 * one, and they change rarely. Registering through this replica refreshes its entry at once; other
 * replicas drop theirs when the registration's notification arrives (forget), and otherwise see
 * the change within the cache's lifetime.
 */
import type { MikroORM } from "@mikro-orm/postgresql";
import type { JobTypeRecord } from "../core/task.js";
import { hasLimits } from "../core/claim-limits.js";
import { TaskwireError } from "../core/errors.js";
import type { Db } from "../store/db.js";
import { JobType } from "../store/entities/index.js";
import { jobTypeUpsert } from "../store/sql/job-type-upsert.js";

/** How long a cached job type is trusted (ms). */
const CACHE_MS = 2_000;
/**
 * Entries kept at most. Names that do not exist are cached too (a client may send any name), so
 * without a bound every unknown name a client tried would stay in memory.
 */
const MAX_CACHED = 10_000;

function key(namespace: string, name: string): string {
  return `${namespace}\u0000${name}`;
}

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
    retentionMs: row.retentionMs ?? null,
    inlineModule: row.inlineModule ?? null,
    dedupWindowMs: row.dedupWindowMs ?? null,
    maxPayloadBytes: row.maxPayloadBytes ?? null,
    rateLimit: row.rateMaxStarts == null || row.rateWindowMs == null ? null : { maxStarts: row.rateMaxStarts, windowMs: row.rateWindowMs },
    maxRunning: row.maxRunning ?? null,
    maxRunningPerKey: row.maxRunningPerKey ?? null,
    createdAt: new Date(row.createdAt),
    updatedAt: new Date(row.updatedAt),
  };
}

/** What the dispatcher asks about a job type before claiming: does it have limits? */
export interface LimitHints {
  /**
   * From the cache, without waiting: true when the job type has limits, false when not (or it
   * does not exist), undefined when it is not cached (it is then read in the background). An
   * expired entry still answers and is refreshed in the background: the claims themselves check
   * the limits in the database.
   */
  limitedHint(namespace: string, name: string): boolean | undefined;
  /** The same, read from the database when the cache has nothing. */
  limited(namespace: string, name: string): Promise<boolean>;
}

/** Reads and writes job types through MikroORM, with a cache for the hot paths. */
export class JobTypeRegistry implements LimitHints {
  private readonly cache = new Map<string, { record: JobTypeRecord | undefined; expires: number }>();
  private readonly refreshing = new Set<string>();

  constructor(
    private readonly orm: MikroORM,
    private readonly db: Db,
    private readonly maxCached = MAX_CACHED,
  ) {}

  /** The job type, or undefined when the namespace has none of that name. */
  async find(namespace: string, name: string): Promise<JobTypeRecord | undefined> {
    const hit = this.cache.get(key(namespace, name));
    if (hit !== undefined && hit.expires > Date.now()) return hit.record;
    return this.load(namespace, name);
  }

  private async load(namespace: string, name: string): Promise<JobTypeRecord | undefined> {
    const row = await this.orm.em.fork().findOne(JobType, { namespace, name });
    const record = row === null ? undefined : toRecord(row);
    this.remember(key(namespace, name), record);
    return record;
  }

  limitedHint(namespace: string, name: string): boolean | undefined {
    const k = key(namespace, name);
    const hit = this.cache.get(k);
    if ((hit === undefined || hit.expires <= Date.now()) && !this.refreshing.has(k)) {
      this.refreshing.add(k);
      // A failed read keeps what was there; the next hint tries again.
      void this.load(namespace, name)
        .catch(() => undefined)
        .finally(() => this.refreshing.delete(k));
    }
    return hit === undefined ? undefined : hit.record !== undefined && hasLimits(hit.record);
  }

  async limited(namespace: string, name: string): Promise<boolean> {
    const record = await this.find(namespace, name);
    return record !== undefined && hasLimits(record);
  }

  /** Drops the cached entry (the job type was registered, perhaps on another replica). */
  forget(namespace: string, name: string): void {
    this.cache.delete(key(namespace, name));
  }

  /** Caches an entry; when full, expired entries go first, then the oldest. */
  private remember(k: string, record: JobTypeRecord | undefined): void {
    const now = Date.now();
    this.cache.delete(k); // re-inserted last: Map order is insertion order, oldest first
    if (this.cache.size >= this.maxCached) {
      for (const [old, entry] of this.cache) if (entry.expires <= now) this.cache.delete(old);
      for (const old of this.cache.keys()) {
        if (this.cache.size < this.maxCached) break;
        this.cache.delete(old);
      }
    }
    this.cache.set(k, { record, expires: now + CACHE_MS });
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
    const created = await jobTypeUpsert(this.db, input);
    this.cache.delete(key(input.namespace, input.name));
    return { record: await this.get(input.namespace, input.name), created };
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
