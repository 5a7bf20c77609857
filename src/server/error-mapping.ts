/**
 * The one place domain and infrastructure errors become Connect codes. Raw internal messages never
 * reach clients: anything unexpected is logged with a request id and answered INTERNAL with that id.
 */
import { randomUUID } from "node:crypto";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "pino";
import { TaskwireError, type TaskwireErrorCode } from "../core/errors.js";
import { isLockConflict } from "../store/lock-retry.js";

const CODES: Record<TaskwireErrorCode, Code> = {
  INVALID_ARGUMENT: Code.InvalidArgument,
  NOT_FOUND: Code.NotFound,
  ALREADY_EXISTS: Code.AlreadyExists,
  ILLEGAL_TRANSITION: Code.FailedPrecondition,
  STALE_LEASE: Code.FailedPrecondition,
  PAYLOAD_NOT_RENDERABLE: Code.FailedPrecondition,
  RESOURCE_EXHAUSTED: Code.ResourceExhausted,
  UNAUTHENTICATED: Code.Unauthenticated,
  PERMISSION_DENIED: Code.PermissionDenied,
  DATABASE_UNAVAILABLE: Code.Unavailable,
  CONTENDED: Code.Unavailable,
  DEADLINE_EXCEEDED: Code.DeadlineExceeded,
  INTERNAL: Code.Internal,
};

// Connection-level failures: the server is down, restarting, refusing, or the pool timed out.
const CONNECTION_ERROR_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "ENOTFOUND", "EHOSTUNREACH", "57P01", "57P02", "57P03", "53300"]);
const CONNECTION_ERROR_TEXT = /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|the database system is (starting up|shutting down)/i;

/** True when the error means the database cannot be reached right now. */
export function isDatabaseUnavailable(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && (CONNECTION_ERROR_CODES.has(code) || code.startsWith("08"))) return true;
    if (CONNECTION_ERROR_TEXT.test(e.message)) return true;
    if (e instanceof AggregateError && e.errors.some(isDatabaseUnavailable)) return true;
  }
  return false;
}

/** Maps any error thrown by a handler to the ConnectError the client sees. */
export function toConnectError(error: unknown, logger: Logger, context: Record<string, unknown>): ConnectError {
  if (error instanceof ConnectError) return error;
  if (error instanceof TaskwireError && error.code !== "INTERNAL") return new ConnectError(error.message, CODES[error.code]);
  if (isDatabaseUnavailable(error)) {
    logger.warn({ ...context, err: error }, "database unavailable");
    return new ConnectError("the database is unavailable; the request was not carried out, retry later", Code.Unavailable);
  }
  // Still in a lock cycle after the bounded retries (src/store/lock-retry.ts): transient, and nothing was written.
  if (isLockConflict(error)) {
    logger.warn({ ...context, err: error }, "lock conflict after retries");
    return new ConnectError("the database aborted the request in a lock conflict with concurrent work; nothing was changed, retry it", Code.Unavailable);
  }
  if (error instanceof TaskwireError) {
    logger.error({ ...context, err: error }, "request failed");
    return new ConnectError(error.message, Code.Internal);
  }
  const requestId = randomUUID();
  logger.error({ ...context, requestId, err: error }, "internal error");
  return new ConnectError(`internal error (request id ${requestId}); the server log has the details`, Code.Internal);
}

/** An interceptor applying toConnectError to unary answers and to errors raised mid-stream. */
export function createErrorInterceptor(logger: Logger): Interceptor {
  return (next) => async (req) => {
    const context = { procedure: req.url.slice(req.url.lastIndexOf("/", req.url.lastIndexOf("/") - 1)) };
    try {
      const res = await next(req);
      if (!res.stream) return res;
      return { ...res, message: mapStream(res.message, logger, context, req.signal) };
    } catch (error) {
      throw toConnectError(error, logger, context);
    }
  };
}

async function* mapStream<T>(messages: AsyncIterable<T>, logger: Logger, context: Record<string, unknown>, signal: AbortSignal): AsyncIterable<T> {
  try {
    yield* messages;
  } catch (error) {
    // The client went away mid-stream (e.g. a write to its closed stream failed): nothing to report.
    // An UNAVAILABLE the handler raised on purpose is its answer, though: the server's shutdown
    // aborts the call's signal too, and the client must hear it to resume (StreamStatus).
    if (signal.aborted && !(error instanceof ConnectError && error.code === Code.Unavailable)) {
      logger.debug({ ...context, err: error }, "stream ended by the client");
      throw new ConnectError("the client cancelled the stream", Code.Canceled);
    }
    throw toConnectError(error, logger, context);
  }
}
