/** Inline example: a JSON transform, {text} -> {words, distinct, top: [[word, count], ...]}. */
import { defineInlineJob, NonRetryableError } from "../../src/sdk/index.js";

export default defineInlineJob({
  name: "inline.word-count",
  module: "inline/word-count.ts",
  input: "json",
  output: "json",
  handler: (input) => {
    const text = (input as { text?: unknown } | null)?.text;
    if (typeof text !== "string") throw new NonRetryableError('input must be {"text": "..."}');
    const counts = new Map<string, number>();
    for (const word of text.toLowerCase().match(/[\p{L}\p{N}']+/gu) ?? []) counts.set(word, (counts.get(word) ?? 0) + 1);
    const top = [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, 3);
    return { words: [...counts.values()].reduce((a, b) => a + b, 0), distinct: counts.size, top };
  },
});
