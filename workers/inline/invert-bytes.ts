/**
 * Inline example: transforms a large binary buffer (inverts every byte). The input arrives in the
 * thread without a copy (its buffer was transferred), is changed in place, and goes back the same way.
 */
import { BytesValueSchema } from "@bufbuild/protobuf/wkt";
import { defineInlineJob } from "../../src/sdk/index.js";

export default defineInlineJob({
  name: "inline.invert-bytes",
  module: "inline/invert-bytes.ts",
  input: BytesValueSchema,
  output: BytesValueSchema,
  handler: (input) => {
    const bytes = input.value;
    for (let i = 0; i < bytes.length; i++) bytes[i] = ~bytes[i]! & 0xff;
    return { value: bytes };
  },
});
