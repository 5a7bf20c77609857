/** Every migration, in order. Listed in code so that they run the same under tsx and compiled JS. */
import { Migration0001Initial } from "./migration-0001-initial.js";
import { Migration0002Leases } from "./migration-0002-leases.js";
import { Migration0003TaskEvents } from "./migration-0003-task-events.js";
import { Migration0004Retention } from "./migration-0004-retention.js";
import { Migration0005Inline } from "./migration-0005-inline.js";
import { Migration0006TaskAutovacuum } from "./migration-0006-task-autovacuum.js";
import { Migration0007HotPath } from "./migration-0007-hot-path.js";
import { Migration0008DirectHandOff } from "./migration-0008-direct-hand-off.js";
import { Migration0010Auth } from "./migration-0010-auth.js";
import { Migration0011AuditEvents } from "./migration-0011-audit-events.js";
import { Migration0020DedupSchedules } from "./migration-0020-dedup-schedules.js";
import { Migration0030Dependencies } from "./migration-0030-dependencies.js";
import { Migration0040Limits } from "./migration-0040-limits.js";
import { Migration0041LimitedUnblock } from "./migration-0041-limited-unblock.js";

export const MIGRATIONS = [
  { name: "0001_initial", class: Migration0001Initial },
  { name: "0002_leases", class: Migration0002Leases },
  { name: "0003_task_events", class: Migration0003TaskEvents },
  { name: "0004_retention", class: Migration0004Retention },
  { name: "0005_inline", class: Migration0005Inline },
  { name: "0006_task_autovacuum", class: Migration0006TaskAutovacuum },
  { name: "0007_hot_path", class: Migration0007HotPath },
  { name: "0008_direct_hand_off", class: Migration0008DirectHandOff },
  { name: "0010_auth", class: Migration0010Auth },
  { name: "0011_audit_events", class: Migration0011AuditEvents },
  { name: "0020_dedup_schedules", class: Migration0020DedupSchedules },
  { name: "0030_dependencies", class: Migration0030Dependencies },
  { name: "0040_limits", class: Migration0040Limits },
  { name: "0041_limited_unblock", class: Migration0041LimitedUnblock },
];
