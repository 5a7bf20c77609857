/**
 * `taskwire server start` as a real child process: tests that need real signals, exit codes or a
 * second process use these instead of an in-process server, and learn its URL from the
 * "taskwire listening" log line (the only place a server started with --port 0 says its port).
 */
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Test } from "tap";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const bin = path.join(repo, "bin/taskwire.js");

/** The "listening" log line's URL; http or https (a server with --tls-cert listens on https). */
const LISTENING = /"url":"(https?:\/\/[^"]+)".*taskwire listening/;

/** A child process being watched for its "listening" line. */
export interface CliRun {
  child: ChildProcess;
  /** Everything read from the watched streams so far, for assertions on the log. */
  output: () => string;
  /** Resolves with the exit code (null after a signal). */
  exit: Promise<number | null>;
  /** Resolves with the URL from the "listening" log line; never rejects (see listeningUrl). */
  listening: Promise<string>;
}

export type OutputStream = "stdout" | "stderr";

export interface RunCliOptions {
  /** The child's environment; default: this process's. */
  env?: NodeJS.ProcessEnv;
  /** The working folder; default: the repository root. */
  cwd?: string;
  /** Which streams make up output() and are searched for the URL; default: both. */
  streams?: readonly OutputStream[];
}

/** Runs `node bin/taskwire.js ...args` with stdout and stderr piped, watching its output. */
export function runCli(args: readonly string[], { env, cwd = repo, streams }: RunCliOptions = {}): CliRun {
  const child = spawn(process.execPath, [bin, ...args], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
  return watchOutput(child, streams);
}

/**
 * Collects a piped child's output and watches it for the "listening" line; for a child spawned
 * some other way than runCli (such as a README command run through bash).
 */
export function watchOutput(child: ChildProcess, streams: readonly OutputStream[] = ["stdout", "stderr"]): CliRun {
  let output = "";
  let onListening: (url: string) => void = () => undefined;
  const listening = new Promise<string>((resolve) => (onListening = resolve));
  const collect = (chunk: Buffer) => {
    output += chunk.toString();
    const match = LISTENING.exec(output);
    if (match) onListening(match[1]!);
  };
  for (const stream of streams) child[stream]!.on("data", collect);
  const exit = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, output: () => output, exit, listening };
}

/** Resolves with the URL once it listens; rejects with its output if it exits first, so a failed start does not hang the test. */
export function listeningUrl(run: CliRun): Promise<string> {
  return Promise.race([run.listening, run.exit.then((code) => Promise.reject(new Error(`exited ${code}: ${run.output()}`)))]);
}

/** listeningUrl, with a teardown that SIGKILLs the process so that no server outlives `t`. */
export function startedUrl(t: Test, run: CliRun): Promise<string> {
  t.teardown(() => void run.child.kill("SIGKILL"));
  return listeningUrl(run);
}
