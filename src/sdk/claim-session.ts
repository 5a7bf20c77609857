/**
 * One Claim stream from the worker's side: its request queue, the call it can cut, and its
 * heartbeat. Leases do not belong to a session (they move to the next one on reconnect); a session
 * only decides whether a message can go out right now.
 */
import type { ClaimRequest } from "../gen/taskwire/v1/worker_pb.js";
import type { LeaseChannel } from "./attempt.js";
import { heartbeatRequest } from "./claim-messages.js";
import { createPushQueue, type PushQueue } from "./push-queue.js";

/** A Claim stream, from hello to its end. */
export class ClaimSession implements LeaseChannel {
  readonly requests: PushQueue<ClaimRequest> = createPushQueue<ClaimRequest>();
  /** Cuts the call; used when the stream must end without the server's cooperation. */
  readonly call = new AbortController();
  welcomed = false;
  ended = false;
  private heartbeat: NodeJS.Timeout | undefined;

  /** `held`: keys of the leases named in this stream's hello, which its welcome adopts or not. */
  constructor(readonly held: ReadonlySet<string>) {}

  /** Queues a message if the stream is welcomed and still open (reports before welcome would race adoption). */
  send(request: ClaimRequest): boolean {
    return this.welcomed && !this.ended && this.requests.push(request);
  }

  /** Marks the stream welcomed and starts heartbeating, which keeps every lease it holds alive. */
  welcome(heartbeatMs: number): void {
    this.welcomed = true;
    clearInterval(this.heartbeat);
    // unref: the open stream keeps the process alive while it matters; the timer never should.
    this.heartbeat = setInterval(() => this.send(heartbeatRequest()), heartbeatMs).unref();
  }

  /** Half-closes the request side: the server answers what it has, then ends the stream. */
  halfClose(): void {
    this.requests.close();
  }

  /** Marks the stream over and releases everything it holds (timer, request queue, HTTP/2 stream). */
  end(): void {
    this.ended = true;
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    this.requests.close();
    this.call.abort(); // releases the HTTP/2 stream if the call is still half-open
  }
}
