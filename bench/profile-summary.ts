/**
 * Summarises a V8 .cpuprofile (from `npm run bench -- --cpu-prof DIR`): where the server's CPU went
 * during the measured windows, by package/folder and by function (self time), and the inclusive time
 * of the server's own functions (src/).
 *
 *   node --import tsx bench/profile-summary.ts DIR/w1.1.server.cpuprofile [--window processing] [--top 25] [--callers writev]
 *
 * With a <label>.windows.jsonl beside the profile (written by the harness), only samples inside the
 * named window (default: all windows) count, so startup (compiling, migrations) is left out.
 * --callers NAME adds where the self time of functions named NAME comes from: the nearest frame in a
 * package or in src/ (node's internals skipped).
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { table } from "./stats.js";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { window: { type: "string" }, top: { type: "string", default: "25" }, callers: { type: "string" } },
});
const file = positionals[0];
if (file === undefined) throw new Error("usage: profile-summary.ts FILE.cpuprofile [--window NAME] [--top N]");
const top = Number(values.top);
const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;

// Windows in ms of CLOCK_MONOTONIC; V8's timestamps are in µs of the same clock.
const windowsFile = path.join(path.dirname(file), `${path.basename(file).replace(/\.server\.cpuprofile$/, "")}.windows.jsonl`);
const windows = existsSync(windowsFile)
  ? readFileSync(windowsFile, "utf8")
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => JSON.parse(l) as { name: string; fromMs: number; toMs: number })
      .filter((w) => values.window === undefined || w.name === values.window)
  : [];
const inWindow = (us: number) => windows.length === 0 || windows.some((w) => us >= w.fromMs * 1000 && us <= w.toMs * 1000);

const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

/** Where a frame's code lives: a package, a node: module, a src/ folder, or a V8 pseudo-frame. */
function area(url: string, name: string): string {
  if (url === "") return name.startsWith("(") ? name : "(native)";
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith("node:")) return "node:" + url.slice(5).split("/")[0]!;
  const src = /\/(src|bench|workers)\/(.*)$/.exec(url);
  if (src) return `${src[1]}/${src[2]!.split("/")[0]}`;
  return url;
}

const label = (n: ProfileNode) => {
  const f = n.callFrame;
  const where = f.url === "" ? "" : ` ${f.url.replace(/^.*?\/(node_modules|src|bench)\//, "$1/").replace(/^file:\/\//, "")}:${f.lineNumber + 1}`;
  return `${f.functionName || "(anonymous)"}${where}`;
};

const selfByArea = new Map<string, number>();
const selfByFunction = new Map<string, number>();
const inclusiveSrc = new Map<string, number>();
const callers = new Map<string, number>();
let total = 0;
let idle = 0;
let t = profile.startTime;
for (let i = 0; i < profile.samples.length; i++) {
  t += profile.timeDeltas[i] ?? 0;
  if (!inWindow(t)) continue;
  const dt = (profile.timeDeltas[i + 1] ?? 0) / 1000; // a sample's time runs to the next one
  const node = byId.get(profile.samples[i]!)!;
  if (node.callFrame.functionName === "(idle)") {
    idle += dt;
    continue;
  }
  total += dt;
  const a = area(node.callFrame.url, node.callFrame.functionName);
  selfByArea.set(a, (selfByArea.get(a) ?? 0) + dt);
  selfByFunction.set(label(node), (selfByFunction.get(label(node)) ?? 0) + dt);
  if (values.callers !== undefined && node.callFrame.functionName === values.callers) {
    let id = parent.get(node.id);
    while (id !== undefined && !/node_modules|\/src\//.test(byId.get(id)!.callFrame.url)) id = parent.get(id);
    const caller = id === undefined ? "(none)" : label(byId.get(id)!);
    callers.set(caller, (callers.get(caller) ?? 0) + dt);
  }
  // Inclusive time of src/ functions: each distinct one on the stack once.
  const seen = new Set<string>();
  for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
    const n = byId.get(id)!;
    if (!/\/src\//.test(n.callFrame.url)) continue;
    const l = label(n);
    if (seen.has(l)) continue;
    seen.add(l);
    inclusiveSrc.set(l, (inclusiveSrc.get(l) ?? 0) + dt);
  }
}

const rows = (m: Map<string, number>) =>
  [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([k, v]) => [k, Math.round(v), `${((100 * v) / total).toFixed(1)}%`]);

console.log(`${file}: ${Math.round(total)} ms busy, ${Math.round(idle)} ms idle${windows.length > 0 ? ` in ${windows.map((w) => w.name).join(", ")}` : ""}\n`);
console.log(table(["self time by area", "ms", "share"], rows(selfByArea)));
console.log();
console.log(table(["self time by function", "ms", "share"], rows(selfByFunction)));
console.log();
console.log(table(["inclusive time, src/ functions", "ms", "share"], rows(inclusiveSrc)));
if (values.callers !== undefined) {
  console.log();
  console.log(table([`callers of ${values.callers}`, "ms", "share"], rows(callers)));
}
