/** One key by id: what every authentication of an uncached key reads (primary key lookup). */
import type { ApiKeyRecord } from "../../core/api-key.js";
import type { Db } from "../db.js";
import { API_KEY_COLUMNS, apiKeyFromRow, type ApiKeyRow } from "./api-key-columns.js";

const SQL = `SELECT ${API_KEY_COLUMNS} FROM api_key k WHERE k.id = $1`;

/** The key, or undefined when no key has that id. */
export async function apiKeyGet(db: Db, id: string): Promise<ApiKeyRecord | undefined> {
  const [row] = await db.query<ApiKeyRow>(SQL, [id]);
  return row === undefined ? undefined : apiKeyFromRow(row);
}
