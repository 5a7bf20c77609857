/** Inline example: the SHA-256 of a payload's bytes, as hex. Runs on the server's thread pool. */
import { createHash } from "node:crypto";
import { BytesValueSchema, StringValueSchema } from "@bufbuild/protobuf/wkt";
import { defineInlineJob } from "../../src/sdk/index.js";

export default defineInlineJob({
  name: "inline.hash",
  module: "inline/hash.ts",
  input: BytesValueSchema,
  output: StringValueSchema,
  handler: (input) => ({ value: createHash("sha256").update(input.value).digest("hex") }),
});
