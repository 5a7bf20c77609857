/** The inline pool on its own, with the example modules: payloads move to the thread and back, never copied. */
import { createHash } from "node:crypto";
import { fromBinary } from "@bufbuild/protobuf";
import { BytesValueSchema, StringValueSchema } from "@bufbuild/protobuf/wkt";
import t from "tap";
import { InlinePool } from "../../src/inline/inline-pool.js";
import { packPayload } from "../../src/sdk/payload.js";

const MiB = 1024 * 1024;
const pool = new InlinePool({ dir: "workers", maxThreads: 1, maxQueue: 1 });
t.teardown(() => pool.close());

/** A BytesValue payload whose encoding owns its buffer, as large ones read from PostgreSQL do. */
function bytesPayload(size: number) {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i += 4096) data[i] = i % 251;
  const any = packPayload(BytesValueSchema, { value: data });
  return { typeUrl: any.typeUrl, value: any.value };
}
const run = (module: string, jobType: string, input: { typeUrl: string; value: Uint8Array }) =>
  pool.run({ module, jobType, taskId: "1", attempt: 1, input, signal: new AbortController().signal });

t.test("the input's buffer is detached once dispatched, and the output arrives intact", async (t) => {
  const input = bytesPayload(1 * MiB);
  const expected = createHash("sha256").update(fromBinary(BytesValueSchema, input.value).value).digest("hex");
  const sent = input.value.buffer;
  const running = run("inline/hash.ts", "inline.hash", input);
  t.equal((sent as ArrayBuffer & { detached: boolean }).detached, true, "transferred: the sender's ArrayBuffer is detached at once");
  t.equal(input.value.byteLength, 0, "and the view on it is empty");
  const output = await running;
  t.equal(fromBinary(StringValueSchema, output!.value).value, expected, "the thread hashed the moved bytes");
});

t.test("a small payload sharing Node's Buffer pool is copied first (the pool cannot be transferred)", async (t) => {
  const any = packPayload("json", { text: "a rose is a rose" });
  const pooled = Buffer.from(any.value); // small Buffers are views into a shared slab
  t.not(pooled.byteLength, pooled.buffer.byteLength, "a view into a larger slab");
  const output = await run("inline/word-count.ts", "inline.word-count", { typeUrl: any.typeUrl, value: pooled });
  t.ok(output !== null);
  t.equal((pooled.buffer as ArrayBuffer & { detached: boolean }).detached, false, "the shared slab was not detached");
});

t.test("a 64 MiB payload moves to the thread without a copy: the process's memory does not grow by it", async (t) => {
  const input = bytesPayload(64 * MiB);
  const expected = createHash("sha256").update(fromBinary(BytesValueSchema, input.value).value).digest("hex");
  const before = process.memoryUsage().rss;
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 2);
  const output = await run("inline/hash.ts", "inline.hash", input);
  clearInterval(sampler);
  peak = Math.max(peak, process.memoryUsage().rss);
  t.equal(fromBinary(StringValueSchema, output!.value).value, expected);
  const grew = (peak - before) / MiB;
  t.comment(`RSS grew by ${grew.toFixed(0)} MiB at most while a 64 MiB payload was hashed on a thread`);
  t.ok(grew < 32, `RSS grew by ${grew.toFixed(0)} MiB (a copy would add 64 MiB)`);
});

t.test("a large buffer transformed on the thread comes back whole", async (t) => {
  const input = bytesPayload(16 * MiB);
  const output = await run("inline/invert-bytes.ts", "inline.invert-bytes", input);
  const inverted = fromBinary(BytesValueSchema, output!.value).value;
  t.equal(inverted.byteLength, 16 * MiB);
  t.same([inverted[0], inverted[4096], inverted[1]], [255, ~(4096 % 251) & 0xff, 255], "every byte inverted");
});

t.test("a pool that never ran an attempt has started no thread", async (t) => {
  const idle = new InlinePool({ dir: "workers", maxThreads: 2 });
  t.same(idle.stats, { threads: 0, queued: 0, utilization: 0 });
  t.equal(idle.moduleProblem("inline/hash.ts"), null, "modules are checked without a thread");
  t.equal(idle.capacity, 4, "threads + queue (the queue defaults to the thread count)");
  await idle.close();
});

t.test("threads take the process's module-loading flags, never its V8 heap flags (Worker refuses those)", async (t) => {
  const { threadExecArgv } = await import("../../src/inline/inline-pool.js");
  t.same(threadExecArgv(["--max-semi-space-size=16", "--import", "tsx"]), ["--import", "tsx"]);
  t.same(threadExecArgv(["--max-old-space-size=512", "--enable-source-maps"]), ["--enable-source-maps", "--import", "tsx"], "tsx is added when missing");
  t.same(threadExecArgv(["--import=tsx", "--cpu-prof"]), ["--import=tsx"]);
  t.same(threadExecArgv(["--require", "./setup.cjs", "--import", "tsx/esm"]), ["--require", "./setup.cjs", "--import", "tsx/esm"]);
});
