#!/usr/bin/env -S node --max-semi-space-size=16
// The `taskwire` command. Runs the TypeScript sources through tsx, so no build step is needed.
// --max-semi-space-size=16: under load V8 grows the young generation to 128 MiB and keeps it, which
// was most of the server's RSS (W1: 245 -> ~200 MB with 16 MiB semi-spaces, throughput unchanged).
import { register } from "tsx/esm/api";

register();
await import("../src/cli/main.ts");
