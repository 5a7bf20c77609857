/** A logger for code under test: the real pino API, writing nothing. */
import { type Logger, pino } from "pino";

/** A pino logger at level "silent". */
export function testLogger(): Logger {
  return pino({ level: process.env.TASKWIRE_TEST_LOG ?? "silent" });
}
