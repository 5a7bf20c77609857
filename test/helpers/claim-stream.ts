/** A raw Claim stream for protocol tests: send requests, await typed responses. */
import { create } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { ClaimRequestSchema, WorkerHeartbeatSchema, WorkerHelloSchema, type ClaimRequest, type ClaimResponse, type Lease, type WorkerService } from "../../src/gen/taskwire/v1/worker_pb.js";
import { MessageQueue } from "../../src/server/message-queue.js";

type ResponseCase = NonNullable<ClaimResponse["message"]["case"]>;
type ResponseValue<C extends ResponseCase> = Extract<ClaimResponse["message"], { case: C }>["value"];

/** An open Claim stream. */
export interface ClaimStream {
  send(message: ClaimRequest["message"]): void;
  /** The next response of that kind (earlier ones of other kinds are kept for later calls). */
  next<C extends ResponseCase>(kind: C, timeoutMs?: number): Promise<ResponseValue<C>>;
  /** Responses of that kind received so far and not yet taken. */
  taken<C extends ResponseCase>(kind: C): ResponseValue<C>[];
  /** Half-closes the request side and waits for the server to end the stream. */
  close(): Promise<void>;
  /** Aborts the call, as a crashed worker would. */
  abort(): void;
}

/** Opens a Claim stream and sends hello. */
export function openClaimStream(
  client: Client<typeof WorkerService>,
  hello: { workerId?: string; jobTypes: string[]; credits: number; held?: Lease[] },
): ClaimStream {
  const requests = new MessageQueue<ClaimRequest>();
  const abort = new AbortController();
  const inbox: ClaimResponse["message"][] = [];
  const waiters = new Set<() => void>();
  let ended: unknown = null;
  const send = (message: ClaimRequest["message"]) => requests.push(create(ClaimRequestSchema, { message }));
  send({ case: "hello", value: create(WorkerHelloSchema, { workerId: hello.workerId ?? "", jobTypes: hello.jobTypes, credits: hello.credits, held: hello.held ?? [] }) });
  const done = (async () => {
    try {
      for await (const response of client.claim(requests, { signal: abort.signal })) {
        inbox.push(response.message);
        for (const w of waiters) w();
      }
      ended = true;
    } catch (error) {
      ended = error;
    }
    for (const w of waiters) w();
  })();

  return {
    send,
    async next(kind, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const index = inbox.findIndex((m) => m.case === kind);
        if (index >= 0) return inbox.splice(index, 1)[0]!.value as never;
        if (ended !== null) throw new Error(`stream ended before a ${kind} message: ${String(ended)}`);
        const remaining = deadline - Date.now();
        if (remaining <= 0) throw new Error(`no ${kind} message within ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, remaining);
          const wake = () => {
            clearTimeout(timer);
            waiters.delete(wake);
            resolve();
          };
          waiters.add(wake);
        });
      }
    },
    taken(kind) {
      const mine = inbox.filter((m) => m.case === kind);
      for (const m of mine) inbox.splice(inbox.indexOf(m), 1);
      return mine.map((m) => m.value) as never;
    },
    async close() {
      requests.end();
      await done;
    },
    abort() {
      abort.abort();
    },
  };
}

/**
 * Heartbeats on `stream` every `everyMs` for `forMs`. The gaps stay far inside the tests' 1 s
 * leases, so a timer that fires late on a loaded machine cannot let the sweeper take the lease.
 */
export async function heartbeatFor(stream: ClaimStream, forMs: number, everyMs = 250): Promise<void> {
  const until = Date.now() + forMs;
  for (;;) {
    stream.send({ case: "heartbeat", value: create(WorkerHeartbeatSchema) });
    const left = until - Date.now();
    if (left <= 0) return;
    await new Promise((resolve) => setTimeout(resolve, Math.min(everyMs, left)));
  }
}
