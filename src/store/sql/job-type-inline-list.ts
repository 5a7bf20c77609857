/** The inline job types of every namespace, for the replica's inline runner. */
import type { Db } from "../db.js";

/** One inline job type. */
export interface InlineJobType {
  namespace: string;
  name: string;
  module: string;
  leaseMs: number;
}

const SQL = `
SELECT namespace, name, inline_module AS module, lease_ms AS "leaseMs"
FROM job_type WHERE inline_module IS NOT NULL
ORDER BY namespace, name`;

export function jobTypeInlineList(db: Db): Promise<InlineJobType[]> {
  return db.query<InlineJobType>(SQL);
}
