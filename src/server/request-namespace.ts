/**
 * The namespace of the request being served, for what Connect calls with no handler context: the
 * JSON registry that reads and writes typed payloads, since each namespace has message types of its
 * own. The node handler opens a scope per request; the request gate fills in the caller's namespace.
 */
import { AsyncLocalStorage } from "node:async_hooks";

const scope = new AsyncLocalStorage<{ namespace?: string }>();

/** Runs `work` (a whole request: decoding, handler, encoding) in a scope of its own. */
export function inRequestScope<T>(work: () => T): T {
  return scope.run({}, work);
}

/** Records the caller's namespace in the current request's scope. */
export function setRequestNamespace(namespace: string): void {
  const current = scope.getStore();
  if (current !== undefined) current.namespace = namespace;
}

/** The current request's namespace; undefined outside a request or before authentication. */
export function requestNamespace(): string | undefined {
  return scope.getStore()?.namespace;
}
