/**
 * Resource use read from /proc (Linux): a process's RSS and CPU time, the CPU time of a PostgreSQL
 * cluster's processes, and the whole machine's busy time.
 */
import { readdirSync, readFileSync } from "node:fs";

/** Clock ticks per second of /proc's CPU times (USER_HZ, 100 on every mainstream Linux). */
const TICKS = 100;

/** One reading of a process. */
export interface ProcReading {
  /** Resident set size now, MB. */
  rssMb: number;
  /** Peak resident set size since the process started (VmHWM), MB. */
  hwmMb: number;
  /** User + system CPU time so far, seconds. */
  cpuSeconds: number;
}

function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) is in parentheses and may contain spaces: split after it.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

/** CPU seconds (utime + stime) of a process, undefined if it is gone. */
export function cpuSecondsOf(pid: number): number | undefined {
  const f = statFields(pid);
  // After the name: state(0) ppid(1) ... utime(11) stime(12).
  return f === undefined ? undefined : (Number(f[11]) + Number(f[12])) / TICKS;
}

/** RSS, peak RSS and CPU of a process; undefined if it is gone. */
export function readProcess(pid: number): ProcReading | undefined {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return undefined;
  }
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0);
  const cpuSeconds = cpuSecondsOf(pid);
  if (cpuSeconds === undefined) return undefined;
  return { rssMb: kb("VmRSS") / 1024, hwmMb: kb("VmHWM") / 1024, cpuSeconds };
}

/** Direct children of every process: ppid -> pids. */
function childrenMap(): Map<number, number[]> {
  const map = new Map<number, number[]>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const f = statFields(Number(name));
    if (f === undefined) continue;
    const ppid = Number(f[1]);
    const list = map.get(ppid) ?? [];
    list.push(Number(name));
    map.set(ppid, list);
  }
  return map;
}

/** `root` and all its descendants. */
export function processTree(root: number): number[] {
  const children = childrenMap();
  const out: number[] = [];
  const stack = [root];
  while (stack.length > 0) {
    const pid = stack.pop()!;
    out.push(pid);
    stack.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** The parent pid of a process, undefined if it is gone. */
export function parentOf(pid: number): number | undefined {
  const f = statFields(pid);
  return f === undefined ? undefined : Number(f[1]);
}

/** CPU seconds per pid of a set of processes, to diff two snapshots. */
export type CpuSnapshot = Map<number, number>;

/** CPU seconds of every process in `pids`. */
export function cpuSnapshot(pids: readonly number[]): CpuSnapshot {
  const snap: CpuSnapshot = new Map();
  for (const pid of pids) {
    const cpu = cpuSecondsOf(pid);
    if (cpu !== undefined) snap.set(pid, cpu);
  }
  return snap;
}

/** CPU seconds spent between two snapshots (processes that started in between count in full; ones that exited are lost). */
export function cpuBetween(before: CpuSnapshot, after: CpuSnapshot): number {
  let total = 0;
  for (const [pid, cpu] of after) total += cpu - (before.get(pid) ?? 0);
  return total;
}

/** Busy and total CPU time of the whole machine (all cores), seconds. */
export function machineCpu(): { busy: number; total: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0); // idle + iowait
  return { busy: (total - idle) / TICKS, total: total / TICKS };
}

/** Samples a process's RSS every `intervalMs` and keeps the peak and the timeline. */
export class RssSampler {
  /** Peak since the last resetPeak(), MB. */
  peakMb = 0;
  /** Peak since sampling began, MB. */
  maxMb = 0;
  readonly timeline: { t: number; rssMb: number }[] = [];
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly pid: number,
    intervalMs: number,
    private readonly clock: () => number,
  ) {
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
    this.sample();
  }

  sample(): number | undefined {
    const r = readProcess(this.pid);
    if (r === undefined) return undefined;
    this.peakMb = Math.max(this.peakMb, r.rssMb);
    this.maxMb = Math.max(this.maxMb, r.rssMb);
    this.timeline.push({ t: this.clock(), rssMb: r.rssMb });
    return r.rssMb;
  }

  /** Restarts the peak (the timeline is kept). */
  resetPeak(): void {
    this.peakMb = 0;
    this.sample();
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
