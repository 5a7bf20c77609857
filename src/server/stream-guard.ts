/**
 * Open streams per key, and their end: a key may hold at most --max-streams-per-key streams on this
 * replica (counted per replica); a stream ends with UNAVAILABLE after --max-stream-ms (clients
 * resume: StreamStatus from its cursor, workers by reconnecting), and with UNAUTHENTICATED when its
 * key is revoked or expires, or when development mode ends for a stream opened without a key.
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "pino";
import type { Authenticator } from "../auth/authenticator.js";
import { ANONYMOUS_LIMIT_PREFIX, streamOwner, type Principal } from "../auth/principal.js";
import { LIMIT_SPECS } from "../core/limits.js";
import { principalKey } from "./request-context.js";

/**
 * Streams without a key (Health.Watch) are counted per client, and all of them together may be at
 * most this many times --max-streams-per-key on a replica.
 */
export const ANONYMOUS_STREAMS_FACTOR = 10;

interface OpenStream {
  principal: Principal;
  stop: AbortController;
  timer: NodeJS.Timeout;
}

/** Counts and ends the streams of this replica. */
export class StreamRegistry {
  private readonly byKey = new Map<string, Set<OpenStream>>();
  /** Open streams without a key, over every client. */
  private anonymous = 0;

  constructor(
    private readonly auth: Authenticator,
    private readonly logger: Logger,
    private readonly limits: { maxStreamsPerKey: number; maxStreamMs: number },
  ) {
    auth.on("key:changed", (id) => void this.recheck(id));
    auth.on("dev-mode", (on) => {
      if (!on) this.endAll("dev", "development mode ended: an API key now exists, so this stream needs one; reconnect with a key");
    });
  }

  /** Number of open streams of a limit key (for tests and metrics). */
  openCount(limitKey: string): number {
    return this.byKey.get(limitKey)?.size ?? 0;
  }

  /** Registers a stream; RESOURCE_EXHAUSTED when the key is at its limit. The signal aborts with the reason the stream must end. */
  open(principal: Principal): { signal: AbortSignal; close(): void } {
    let streams = this.byKey.get(principal.limitKey);
    if (streams === undefined) {
      streams = new Set();
      this.byKey.set(principal.limitKey, streams);
    }
    if (streams.size >= this.limits.maxStreamsPerKey) {
      throw new ConnectError(
        `${streamOwner(principal)} already has ${streams.size} open streams on this server, ` +
          `the limit (${LIMIT_SPECS.maxStreamsPerKey.flag} ${this.limits.maxStreamsPerKey}); close one first`,
        Code.ResourceExhausted,
      );
    }
    const anonymous = principal.limitKey.startsWith(ANONYMOUS_LIMIT_PREFIX);
    const anonymousLimit = ANONYMOUS_STREAMS_FACTOR * this.limits.maxStreamsPerKey;
    if (anonymous && this.anonymous >= anonymousLimit) {
      if (streams.size === 0) this.byKey.delete(principal.limitKey);
      throw new ConnectError(
        `callers without an API key already have ${this.anonymous} open streams on this server, the limit for all of them together ` +
          `(${ANONYMOUS_STREAMS_FACTOR} x ${LIMIT_SPECS.maxStreamsPerKey.flag} ${this.limits.maxStreamsPerKey}); use Health.Check, or retry later`,
        Code.ResourceExhausted,
      );
    }
    if (anonymous) this.anonymous += 1;
    const stop = new AbortController();
    const untilExpiry = principal.expiresAt === null ? Infinity : principal.expiresAt.getTime() - Date.now();
    const expires = untilExpiry < this.limits.maxStreamMs;
    const timer = setTimeout(
      () =>
        stop.abort(
          expires
            ? new ConnectError(`API key ${principal.keyId} expired at ${principal.expiresAt!.toISOString()}`, Code.Unauthenticated)
            : new ConnectError(
                `this stream reached its maximum duration (${LIMIT_SPECS.maxStreamMs.flag} ${this.limits.maxStreamMs} ms); reconnect to go on ` +
                  "(StreamStatus: with since = the last cursor received)",
                Code.Unavailable,
              ),
        ),
      Math.max(0, Math.min(untilExpiry, this.limits.maxStreamMs)),
    );
    timer.unref();
    const stream: OpenStream = { principal, stop, timer };
    streams.add(stream);
    let closed = false;
    return {
      signal: stop.signal,
      close: () => {
        if (closed) return;
        closed = true;
        clearTimeout(timer);
        if (anonymous) this.anonymous -= 1;
        const set = this.byKey.get(principal.limitKey);
        set?.delete(stream);
        if (set?.size === 0) this.byKey.delete(principal.limitKey);
      },
    };
  }

  /** A key changed: its streams end if it no longer works as it did when they opened. */
  private async recheck(keyId: string): Promise<void> {
    const streams = this.byKey.get(keyId);
    if (streams === undefined || streams.size === 0) return;
    const [first] = streams;
    let reason: string | undefined;
    try {
      reason = await this.auth.streamEndReason(first!.principal);
    } catch (error) {
      // The database cannot say now; the key's cache entry is gone, so new requests are checked, and
      // these streams end at their maximum duration at the latest.
      this.logger.warn({ err: error, keyId }, "could not check an API key's open streams");
      return;
    }
    if (reason !== undefined) this.endAll(keyId, reason);
  }

  private endAll(limitKey: string, reason: string): void {
    for (const stream of this.byKey.get(limitKey) ?? []) stream.stop.abort(new ConnectError(reason, Code.Unauthenticated));
  }
}

/** Resolves like `next`, or rejects with the signal's reason once it aborts (the listener is removed either way). */
function raceAbort<T>(next: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener("abort", onAbort, { once: true });
    next.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error as Error);
      },
    );
  });
}

/** Ends the response stream with the registry's reason; the handler sees its context aborted and cleans up. */
async function* guarded<T>(messages: AsyncIterable<T>, signal: AbortSignal): AsyncIterable<T> {
  const iterator = messages[Symbol.asyncIterator]();
  let finished = false;
  try {
    for (;;) {
      const next = await raceAbort(iterator.next(), signal);
      if (next.done === true) {
        finished = true;
        return;
      }
      yield next.value;
    }
  } finally {
    // Ended early (the signal, or the client went away): let the handler's finally blocks run. It may
    // be waiting inside, so the call is queued, not awaited.
    if (!finished) void iterator.return?.()?.catch(() => undefined);
  }
}

/** The interceptor registering every streaming call with the registry (after the gate set the principal). */
export function createStreamGuard(registry: StreamRegistry): Interceptor {
  return (next) => async (req) => {
    if (!req.stream) return next(req);
    const principal = req.contextValues.get(principalKey);
    if (principal === undefined) return next(req);
    const ticket = registry.open(principal);
    // The call's signal aborts when the call ends, however it ends.
    req.signal.addEventListener("abort", () => ticket.close(), { once: true });
    if (req.signal.aborted) ticket.close();
    let res;
    try {
      res = await next(req);
    } catch (error) {
      ticket.close();
      throw error;
    }
    if (!res.stream) return res;
    return { ...res, message: guarded(res.message, ticket.signal) };
  };
}
