/**
 * Parent <-> child process plumbing over Node's IPC channel: the parent calls named operations
 * (request/response by id) and children push events (progress).
 */
import { fork, type ChildProcess } from "node:child_process";
import { createWriteStream } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

type Message =
  | { type: "ready" }
  | { type: "call"; id: number; op: string; args: unknown }
  | { type: "reply"; id: number; ok: true; result: unknown }
  | { type: "reply"; id: number; ok: false; error: string }
  | { type: "event"; name: string; data: unknown };

const here = path.dirname(fileURLToPath(import.meta.url));

/** A child process seen from the parent. */
export interface Child {
  readonly pid: number;
  readonly name: string;
  call<T>(op: string, args?: unknown): Promise<T>;
  /** Subscribes to the child's events. */
  on(name: string, listener: (data: unknown) => void): void;
  readonly exited: Promise<number | null>;
  kill(): void;
  /** Closes the IPC channel: the child exits by itself. */
  end(): void;
}

/** Forks `bench/<script>` under tsx and waits until it is loaded (its "ready"). */
export async function forkChild(script: string, name: string, logFile: string, nodeFlags: string[] = []): Promise<Child> {
  const log = createWriteStream(logFile, { flags: "a" });
  const child: ChildProcess = fork(path.join(here, script), [], { execArgv: [...nodeFlags, "--import", "tsx"], stdio: ["ignore", "pipe", "pipe", "ipc"] });
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  const listeners = new Map<string, ((data: unknown) => void)[]>();
  let nextId = 1;
  let gone: Error | undefined;
  let onReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code, signal) => {
      gone = new Error(`${name} (pid ${child.pid}) exited with ${code ?? signal}; see ${logFile}`);
      for (const p of pending.values()) p.reject(gone);
      pending.clear();
      resolve(code);
    }),
  );
  child.on("message", (raw) => {
    const m = raw as Message;
    if (m.type === "ready") onReady();
    else if (m.type === "reply") {
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (m.ok) p?.resolve(m.result);
      else p?.reject(new Error(`${name}: ${m.error}`));
    } else if (m.type === "event") for (const l of listeners.get(m.name) ?? []) l(m.data);
  });
  await Promise.race([ready, exited.then(() => Promise.reject(gone))]);
  return {
    pid: child.pid!,
    name,
    exited,
    call<T>(op: string, args?: unknown): Promise<T> {
      if (gone) return Promise.reject(gone);
      const id = nextId++;
      return new Promise<T>((resolve, reject) => {
        pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
        child.send({ type: "call", id, op, args } satisfies Message);
      });
    },
    on(event, listener) {
      listeners.set(event, [...(listeners.get(event) ?? []), listener]);
    },
    kill() {
      if (!gone) child.kill("SIGKILL");
    },
    end() {
      // The child exits on its own when the channel closes (a CPU profile is written then).
      if (!gone && child.connected) child.disconnect();
    },
  };
}

/** Child side: answers the parent's calls with `handlers`, then says it is ready. Exits when the parent goes. */
export function serve(handlers: Record<string, (args: never) => unknown>): void {
  if (process.send === undefined) throw new Error("run this file from bench/run.ts (it needs an IPC channel)");
  process.on("message", (raw) => {
    const m = raw as Message;
    if (m.type !== "call") return;
    const handler = handlers[m.op];
    Promise.resolve()
      .then(() => {
        if (handler === undefined) throw new Error(`unknown operation ${m.op}`);
        return handler(m.args as never);
      })
      .then(
        (result) => process.send!({ type: "reply", id: m.id, ok: true, result } satisfies Message),
        (error: unknown) => process.send!({ type: "reply", id: m.id, ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) } satisfies Message),
      );
  });
  process.on("disconnect", () => process.exit(0));
  process.send({ type: "ready" } satisfies Message);
}

/** Child side: pushes an event to the parent. */
export function emit(name: string, data: unknown): void {
  process.send?.({ type: "event", name, data } satisfies Message);
}
