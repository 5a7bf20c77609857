/** The one interface the hot-path SQL modules need: a parameterized query ($1, $2, ...) returning rows. */
export interface Db {
  query<Row>(text: string, values?: readonly unknown[]): Promise<Row[]>;
}
