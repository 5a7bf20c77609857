/** The process logger: pino, JSON lines on stderr-free stdout, level from configuration. */
import { pino, type Logger } from "pino";

/** Creates the logger at `level` ("fatal" .. "trace", or "silent"). */
export function createLogger(level: string): Logger {
  return pino({ level, base: { service: "taskwire" } });
}
