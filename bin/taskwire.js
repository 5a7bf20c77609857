#!/usr/bin/env -S node --max-semi-space-size=16 --heap-growing-percent=50
// The `taskwire` command. Runs the TypeScript sources through tsx, so no build step is needed.
// --max-semi-space-size=16: under load V8 grows the young generation to 128 MiB and keeps it, which
// was most of the server's RSS (W1: 245 -> ~200 MB with 16 MiB semi-spaces, throughput unchanged).
// --heap-growing-percent=50: SubmitBatch garbage survives into the old generation, which V8 let
// grow to 4x the live heap (~40 MB) before collecting it (rss100k: 255-274 -> 182 MB, same speed).
import { register } from "tsx/esm/api";

register();
await import("../src/cli/main.ts");
