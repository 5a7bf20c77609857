/** Health: grpc.health.v1.Health for gRPC probes and GET /healthz for HTTP ones. */
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { Db } from "../store/db.js";
import { HealthCheckResponse_ServingStatus as Status, type Health } from "../gen/grpc/health/v1/health_pb.js";

/** Services a health check may name ("" is the whole server). */
const SERVICES = new Set(["", "taskwire.v1.JobTypeService", "taskwire.v1.TaskService", "taskwire.v1.WorkerService", "taskwire.v1.ScheduleService", "taskwire.v1.AdminService"]);

/** Answers whether the database responds, asking it at most once per second. */
export function createDatabaseProbe(db: Db): () => Promise<boolean> {
  let last: { at: number; ok: Promise<boolean> } | undefined;
  return () => {
    if (last === undefined || Date.now() - last.at > 1_000) {
      last = {
        at: Date.now(),
        ok: Promise.race([
          db.query("SELECT 1").then(() => true, () => false),
          new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 2_000).unref()),
        ]),
      };
    }
    return last.ok;
  };
}

/** The grpc.health.v1.Health implementation: SERVING while the database answers. */
export function createHealthHandlers(probe: () => Promise<boolean>): ServiceImpl<typeof Health> {
  const check = async (service: string) => {
    // Quoted in part: a long name would not fit in gRPC's trailers (the client saw a transport error instead).
    if (!SERVICES.has(service)) throw new ConnectError(`unknown service ${JSON.stringify(service.slice(0, 100))}${service.length > 100 ? ` (${service.length} characters)` : ""}`, Code.NotFound);
    return { status: (await probe()) ? Status.SERVING : Status.NOT_SERVING };
  };
  return {
    check: (req) => check(req.service),
    async *watch(req, ctx) {
      let previous: Status | undefined;
      while (!ctx.signal.aborted) {
        const { status } = await check(req.service);
        if (status !== previous) yield { status };
        previous = status;
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
    },
  };
}
