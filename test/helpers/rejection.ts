/** Runs `call` and returns the ConnectError it must throw (fails the test when it does not). */
import { ConnectError } from "@connectrpc/connect";

export async function rejection(call: () => Promise<unknown>): Promise<ConnectError> {
  try {
    await call();
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("expected the call to be rejected");
}
