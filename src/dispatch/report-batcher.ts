/**
 * Coalesces workers' reports: everything reported within one turn of the event loop is written by
 * one statement per kind (task-complete-batch, task-fail-batch), then each caller learns whether
 * its report was accepted. At most two flushes are in flight; reports arriving meanwhile wait for
 * the next one, so under load each statement (and commit) carries many reports.
 */
import type { CompletionReport, FailureReport, ReleaseReport } from "../core/task.js";
import type { TaskState } from "../core/task-state.js";
import type { Db } from "../store/db.js";
import { reportKey, taskCompleteBatch } from "../store/sql/task-complete-batch.js";
import { taskFailBatch } from "../store/sql/task-fail-batch.js";
import { taskReleaseBatch } from "../store/sql/task-release-batch.js";
import { withLockRetries } from "../store/lock-retry.js";

/** The largest batch one statement writes; more wait for the next flush. */
const MAX_BATCH = 1_000;
/** Flushes writing at once. */
const MAX_IN_FLIGHT = 2;

interface Pending<R, A> {
  report: R;
  resolve(answer: A): void;
  reject(error: unknown): void;
}

/** Accepted: the state the task moved to. Rejected: undefined (the lease was not current). */
export type ReportAnswer = TaskState | undefined;

/** Batches completion and failure writes. */
export class ReportBatcher {
  private completions: Pending<CompletionReport, ReportAnswer>[] = [];
  private failures: Pending<FailureReport, ReportAnswer>[] = [];
  private releases: Pending<ReleaseReport, ReportAnswer>[] = [];
  private scheduled = false;
  private inFlight = 0;

  constructor(private readonly db: Db) {}

  /** Records a success; resolves to "succeeded", or undefined when the lease is not current. */
  complete(report: CompletionReport): Promise<ReportAnswer> {
    return new Promise((resolve, reject) => {
      this.completions.push({ report, resolve, reject });
      this.schedule();
    });
  }

  /** Records a failure; resolves to "pending" (retry) or "dead", or undefined when the lease is not current. */
  fail(report: FailureReport): Promise<ReportAnswer> {
    return new Promise((resolve, reject) => {
      this.failures.push({ report, resolve, reject });
      this.schedule();
    });
  }

  /** Hands a task back; resolves to "pending", or undefined when the lease is not current. */
  release(report: ReleaseReport): Promise<ReportAnswer> {
    return new Promise((resolve, reject) => {
      this.releases.push({ report, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight >= MAX_IN_FLIGHT) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    const seen = new Set<string>();
    const repeats: Pending<unknown, ReportAnswer>[] = [];
    const completions = this.firstOfEach(this.completions.splice(0, MAX_BATCH), seen, repeats);
    const failures = this.firstOfEach(this.failures.splice(0, MAX_BATCH), seen, repeats);
    const releases = this.firstOfEach(this.releases.splice(0, MAX_BATCH), seen, repeats);
    if (completions.length + failures.length + releases.length === 0) {
      if (this.waiting()) this.schedule();
      return;
    }
    this.inFlight++;
    try {
      if (this.waiting()) this.schedule();
      await Promise.all([this.flushCompletions(completions), this.flushFailures(failures), this.flushReleases(releases)]);
    } finally {
      // Refused only now: whoever explains the refusal then reads the state the first report left.
      for (const p of repeats) p.resolve(undefined);
      this.inFlight--;
      if (this.waiting()) this.schedule();
    }
  }

  private waiting(): boolean {
    return this.completions.length > 0 || this.failures.length > 0 || this.releases.length > 0;
  }

  private async flushCompletions(batch: Pending<CompletionReport, ReportAnswer>[]): Promise<void> {
    if (batch.length === 0) return;
    try {
      // A statement aborted in a lock cycle (possible only with dependencies: their settlement
      // locks dependents) wrote nothing; it is run again (src/store/lock-retry.ts).
      const reports = batch.map((p) => p.report);
      const accepted = await withLockRetries(() => taskCompleteBatch(this.db, reports));
      for (const p of batch) p.resolve(accepted.has(reportKey(p.report)) ? "succeeded" : undefined);
    } catch (error) {
      for (const p of batch) p.reject(error);
    }
  }

  /**
   * Keeps the first report of each lease in this flush; a second one (a replay, or complete and
   * fail of the same attempt) goes to `repeats`, to be rejected once the first is written, as it
   * would be after that.
   */
  private firstOfEach<R extends CompletionReport | FailureReport | ReleaseReport>(
    batch: Pending<R, ReportAnswer>[],
    seen: Set<string>,
    repeats: Pending<unknown, ReportAnswer>[],
  ): Pending<R, ReportAnswer>[] {
    return batch.filter((p) => {
      const k = reportKey(p.report);
      if (!seen.has(k)) {
        seen.add(k);
        return true;
      }
      repeats.push(p);
      return false;
    });
  }

  private async flushReleases(batch: Pending<ReleaseReport, ReportAnswer>[]): Promise<void> {
    if (batch.length === 0) return;
    try {
      const reports = batch.map((p) => p.report);
      const accepted = await withLockRetries(() => taskReleaseBatch(this.db, reports));
      for (const p of batch) p.resolve(accepted.has(reportKey(p.report)) ? "pending" : undefined);
    } catch (error) {
      for (const p of batch) p.reject(error);
    }
  }

  private async flushFailures(batch: Pending<FailureReport, ReportAnswer>[]): Promise<void> {
    if (batch.length === 0) return;
    try {
      const reports = batch.map((p) => ({ ...p.report, jitter: Math.random() }));
      const accepted = await withLockRetries(() => taskFailBatch(this.db, reports));
      for (const p of batch) p.resolve(accepted.get(reportKey(p.report)));
    } catch (error) {
      for (const p of batch) p.reject(error);
    }
  }
}
