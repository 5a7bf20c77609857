/** Validation of the names clients choose: job types and worker ids. */

/** Job type and worker names: a letter, then letters, digits, '.', '_', ':' or '-'; 1 to 128 characters. */
export const NAME_PATTERN = /^[A-Za-z][A-Za-z0-9._:-]{0,127}$/;

/** A human description of NAME_PATTERN for error messages. */
export const NAME_RULE =
  "1 to 128 characters: a letter, then letters, digits, '.', '_', ':' or '-' (e.g. \"email.send\")";

/** Fully-qualified protobuf message names, e.g. "acme.mail.v1.SendEmail". */
export const MESSAGE_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;

/** Returns why `name` is not a valid name, or undefined when it is. */
export function checkName(name: string): string | undefined {
  if (name.length === 0) return `must not be empty; use ${NAME_RULE}`;
  if (!NAME_PATTERN.test(name)) return `${JSON.stringify(name.slice(0, 140))} is not a valid name; use ${NAME_RULE}`;
  return undefined;
}

/** Namespace names: a lower-case letter, then lower-case letters, digits, '_' or '-'; 1 to 63 characters (CHECK in migration 0001). */
export const NAMESPACE_PATTERN = /^[a-z][a-z0-9_-]{0,62}$/;

/** A human description of NAMESPACE_PATTERN. */
export const NAMESPACE_RULE = "1 to 63 characters: a lower-case letter, then lower-case letters, digits, '_' or '-' (e.g. \"acme\")";

/** Returns why `name` is not a valid namespace name, or undefined when it is. */
export function checkNamespaceName(name: string): string | undefined {
  if (name.length === 0) return `must not be empty; use ${NAMESPACE_RULE}`;
  if (!NAMESPACE_PATTERN.test(name)) return `${JSON.stringify(name.slice(0, 80))} is not a valid namespace name; use ${NAMESPACE_RULE}`;
  return undefined;
}
