/**
 * One Claim stream from the worker's side: its request queue, the call it can cut, and its
 * heartbeat. Leases do not belong to a session (they move to the next one on reconnect); a session
 * only decides whether a message can go out right now.
 */
import { create } from "@bufbuild/protobuf";
import { ClaimRequestSchema, ReportBatchSchema, type ClaimRequest } from "../gen/taskwire/v1/worker_pb.js";
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
  /** Final reports gathered in this turn of the event loop, not sent yet. */
  private reports: ClaimRequest[] = [];
  private heartbeat: NodeJS.Timeout | undefined;

  /** `held`: keys of the leases named in this stream's hello, which its welcome adopts or not. */
  constructor(readonly held: ReadonlySet<string>) {}

  /**
   * Queues a message if the stream is welcomed and still open (reports before welcome would race
   * adoption). Final reports (complete, fail, release) wait for the end of this turn of the event
   * loop and go out together as one `reports` message: handlers that finish together cost the
   * server one message, not one each.
   */
  send(request: ClaimRequest): boolean {
    if (!this.welcomed || this.ended || this.requests.closed) return false;
    const kind = request.message.case;
    if (kind !== "complete" && kind !== "fail" && kind !== "release") return this.requests.push(request);
    if (this.reports.length === 0) setImmediate(() => this.flushReports());
    this.reports.push(request);
    return true;
  }

  /** Sends the reports gathered this turn: one alone as it is, several as one `reports` batch. */
  private flushReports(): void {
    const reports = this.reports;
    this.reports = [];
    if (reports.length === 0 || this.ended) return; // a stream that ended: the next one's adoption resends them
    if (reports.length === 1) {
      this.requests.push(reports[0]!);
      return;
    }
    const batch = create(ReportBatchSchema);
    for (const { message: m } of reports) {
      if (m.case === "complete") batch.completions.push(m.value);
      else if (m.case === "fail") batch.failures.push(m.value);
      else if (m.case === "release") batch.releases.push(m.value);
    }
    this.requests.push(create(ClaimRequestSchema, { message: { case: "reports", value: batch } }));
  }

  /** Marks the stream welcomed and starts heartbeating, which keeps every lease it holds alive. */
  welcome(heartbeatMs: number): void {
    this.welcomed = true;
    clearInterval(this.heartbeat);
    // unref: the open stream keeps the process alive while it matters; the timer never should.
    this.heartbeat = setInterval(() => this.send(heartbeatRequest()), heartbeatMs).unref();
  }

  /** Half-closes the request side (after the reports gathered so far): the server answers what it has, then ends the stream. */
  halfClose(): void {
    this.flushReports();
    this.requests.close();
  }

  /** Marks the stream over and releases everything it holds (timer, request queue, HTTP/2 stream). */
  end(): void {
    this.ended = true;
    this.reports = [];
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    this.requests.close();
    this.call.abort(); // releases the HTTP/2 stream if the call is still half-open
  }
}
