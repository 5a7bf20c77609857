/**
 * Turns an `Authorization` header into a Principal, cheaply enough for every request: keys are
 * looked up by id and kept in memory for a few seconds (cacheMs), the secret's SHA-256 is compared
 * in constant time on every request, and last use is recorded in memory (KeyUsage).
 *
 * A revoked key stops working on this replica as soon as the `taskwire_keys` notification arrives,
 * and at the latest `cacheMs` after the revocation commits (if notifications were lost), since a
 * cached entry is never trusted longer. Expiry is checked against the clock on every request.
 *
 * Development mode: while no API key was ever created, on a loopback bind without --require-auth,
 * a request without a key runs in namespace "default" with every role. Revoked and expired keys
 * count (keys are never deleted), so revoking every key never opens the server to everyone again:
 * an operator mints a new key with `taskwire keys create`, which works on the database directly.
 * Whether a key exists is read at start, and while none does, on every key notification, after
 * the notification connection reconnects and every `recheckMs`; a valid key on a request ends
 * development mode at once. Once this process has seen a key it never goes back.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import { keyUnusableReason, type ApiKeyRecord } from "../core/api-key.js";
import { bearerToken, parseToken } from "../core/api-key-token.js";
import { TaskwireError } from "../core/errors.js";
import type { Role } from "../core/roles.js";
import type { Db } from "../store/db.js";
import { apiKeyGet } from "../store/sql/api-key-get.js";
import { apiKeyAnyExists } from "../store/sql/api-key-any-exists.js";
import { KeyUsage } from "./key-usage.js";
import { DEV_PRINCIPAL, type Principal } from "./principal.js";

/** Authenticator settings. */
export interface AuthenticatorOptions {
  /** Development mode is possible at all (no --require-auth, loopback bind or explicitly allowed). */
  devModeAllowed: boolean;
  /** How long a looked-up key is trusted without asking the database again (ms). */
  cacheMs: number;
  /** How often last use is written (ms). */
  usageFlushMs: number;
  /** How often "does a key exist" is asked again without a notification, while none does (ms). */
  recheckMs: number;
}

/** A key change announced by the api_key_notify trigger. */
export interface KeyNotice {
  id: string;
  op: string;
}

/** Typed events for the stream registry and tests. */
export interface AuthenticatorEvents {
  /** A key changed (revoked, created); streams opened with it are checked again. */
  "key:changed": [string];
  /** Development mode started (true) or ended (false). */
  "dev-mode": [boolean];
}

/** Keys (and unknown ids) kept in memory at most. */
const MAX_CACHED_KEYS = 10_000;

interface CacheEntry {
  /** Undefined: no key has this id. */
  key: Promise<ApiKeyRecord | undefined>;
  loadedAt: number;
  principal?: Principal;
}

/** The one place requests are authenticated. */
export class Authenticator extends EventEmitter<AuthenticatorEvents> {
  private readonly cache = new Map<string, CacheEntry>();
  private readonly usage: KeyUsage;
  /** Whether a key was ever created; undefined until start() read it (no development mode in doubt). Never goes from true back. */
  private keysExist: boolean | undefined;
  private readonly timer: NodeJS.Timeout;
  private checking: Promise<void> | undefined;
  /** The development mode last logged (undefined before the first check). */
  private announcedDevMode: boolean | undefined;

  constructor(
    private readonly db: Db,
    private readonly logger: Logger,
    private readonly options: AuthenticatorOptions,
  ) {
    super();
    this.usage = new KeyUsage(db, logger, options.usageFlushMs);
    this.timer = setInterval(() => {
      if (this.keysExist !== true) void this.recheck().catch(() => undefined);
    }, options.recheckMs);
    this.timer.unref();
  }

  /** Reads whether a key exists; rejects when the database cannot say (the server must not start in doubt). */
  async start(): Promise<void> {
    this.setKeysExist(await apiKeyAnyExists(this.db));
  }

  /** True when, as last read, an API key was ever created (revoked and expired ones count). */
  get keyExists(): boolean {
    return this.keysExist !== false;
  }

  /** True while requests without a key are served (development mode). */
  get devMode(): boolean {
    return this.options.devModeAllowed && this.keysExist === false;
  }

  /** The principal of a request with this `Authorization` header (null: none). Throws UNAUTHENTICATED. */
  async authenticate(header: string | null): Promise<Principal> {
    if (header === null || header === "") {
      if (this.devMode) return DEV_PRINCIPAL;
      throw new TaskwireError(
        "UNAUTHENTICATED",
        "this server requires an API key: send \"Authorization: Bearer <token>\" (an operator creates keys with `taskwire keys create --namespace <name> --role <roles>`)",
      );
    }
    const token = bearerToken(header);
    if (token === undefined) throw new TaskwireError("UNAUTHENTICATED", "the Authorization header must be \"Bearer <token>\"");
    const parts = parseToken(token);
    if (parts === undefined) throw new TaskwireError("UNAUTHENTICATED", "the bearer token is not a Taskwire API key (tw_<id>_<secret>)");
    const entry = this.entry(parts.id);
    const key = await entry.key;
    const presented = createHash("sha256").update(parts.secret).digest();
    // A wrong secret and an unknown id answer alike: neither tells a guesser anything.
    if (key === undefined || key.secretHash.byteLength !== presented.byteLength || !timingSafeEqual(presented, key.secretHash)) {
      throw new TaskwireError("UNAUTHENTICATED", "the API key is not valid");
    }
    // Only the holder of the secret learns why a real key no longer works.
    const unusable = keyUnusableReason(key, Date.now());
    if (unusable !== undefined) throw new TaskwireError("UNAUTHENTICATED", unusable);
    this.usage.touch(key.id);
    if (this.keysExist !== true) this.setKeysExist(true);
    entry.principal ??= {
      keyId: key.id,
      actor: key.id,
      namespace: key.namespace,
      roles: new Set<Role>(key.roles),
      expiresAt: key.expiresAt,
      limitKey: key.id,
    };
    return entry.principal;
  }

  /**
   * Why a stream opened by `principal` must end now (its key was revoked or changed), or undefined.
   * Reads the key afresh (after a notice the cached entry is gone).
   */
  async streamEndReason(principal: Principal): Promise<string | undefined> {
    if (principal.keyId === null) return this.devMode || principal.actor === "" ? undefined : "development mode ended: an API key now exists";
    const key = await this.entry(principal.keyId).key;
    if (key === undefined) return `API key ${principal.keyId} no longer exists`;
    const unusable = keyUnusableReason(key, Date.now());
    if (unusable !== undefined) return unusable;
    if (key.namespace !== principal.namespace || key.roles.join(",") !== [...principal.roles].join(",")) return `API key ${key.id} was changed`;
    return undefined;
  }

  /** A key notification: forget the cached key; a new key ends development mode at once. */
  onKeyNotice(notice: KeyNotice): void {
    if (typeof notice.id === "string") this.cache.delete(notice.id);
    if (notice.op === "insert") this.setKeysExist(true);
    else if (this.keysExist !== true) void this.recheck().catch(() => undefined);
    if (typeof notice.id === "string") this.emit("key:changed", notice.id);
  }

  /** After the notification connection was lost: notices may be missing, so nothing cached is trusted. */
  onResync(): void {
    const ids = [...this.cache.keys()];
    this.cache.clear();
    if (this.keysExist !== true) void this.recheck().catch(() => undefined);
    for (const id of ids) this.emit("key:changed", id);
  }

  /** Writes pending last-use times and stops the timers. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.usage.stop();
  }

  /** Writes pending last-use times now (tests, shutdown). */
  flushUsage(): Promise<void> {
    return this.usage.flush();
  }

  private entry(id: string): CacheEntry {
    const now = Date.now();
    let entry = this.cache.get(id);
    if (entry === undefined || now - entry.loadedAt >= this.options.cacheMs) {
      const loading = apiKeyGet(this.db, id);
      entry = { key: loading, loadedAt: now };
      const mine = entry;
      this.cache.set(id, mine);
      // A failed read (database down) is not cached: the next request asks again.
      loading.catch(() => {
        if (this.cache.get(id) === mine) this.cache.delete(id);
      });
      if (this.cache.size > MAX_CACHED_KEYS) this.evictOld(now);
    }
    return entry;
  }

  /** Bounds the cache under a flood of made-up key ids: expired entries go, then the oldest (insertion order). */
  private evictOld(now: number): void {
    for (const [id, entry] of this.cache) if (now - entry.loadedAt >= this.options.cacheMs) this.cache.delete(id);
    for (const id of this.cache.keys()) {
      if (this.cache.size <= MAX_CACHED_KEYS) break;
      this.cache.delete(id);
    }
  }

  private recheck(): Promise<void> {
    this.checking ??= (async () => {
      try {
        this.setKeysExist(await apiKeyAnyExists(this.db));
      } finally {
        this.checking = undefined;
      }
    })();
    return this.checking;
  }

  /** Records what was read or learnt; "none" never replaces "some" (a read that started before a key was created loses). */
  private setKeysExist(exist: boolean): void {
    if (this.keysExist === true) return;
    this.keysExist = exist;
    const wasDev = this.announcedDevMode;
    if (!this.options.devModeAllowed || wasDev === this.devMode) return;
    this.announcedDevMode = this.devMode;
    if (this.devMode) {
      this.logger.warn(
        "development mode: no API key exists, so every request without a key runs in namespace \"default\" with every role; " +
          "create a key (`taskwire keys create --namespace default --role admin`) to require keys",
      );
      this.emit("dev-mode", true);
    } else if (wasDev === true) {
      this.logger.info("an API key exists: development mode ended, every request now needs a key");
      this.emit("dev-mode", false);
    }
  }
}
