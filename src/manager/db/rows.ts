// The manager's tables as TypeScript sees their rows, one interface per table of
// migrations/*.sql, in the shapes both drivers return (database.ts): integer → number,
// varchar/text → string, boolean → boolean, timestamptz → Date, bytea → Uint8Array, jsonb → the
// parsed JSON. A JSON column's type is the document the API validates before storing it
// (schemas.ts, jobs/args.ts). A new column goes into its migration and here together.
import type { Static } from "@sinclair/typebox";
import type { PreheatArgs, TaskArgs } from "../jobs/args.js";
import type * as S from "../schemas.js";
import type * as C from "../commands/schemas.js";

/** Any JSON object, where the manager stores what a client sent without a schema of its own. */
export type JsonObject = Record<string, unknown>;

export interface TenantRow {
  id: number;
  name: string;
  bio: string;
  created_at: Date;
  updated_at: Date;
}

export interface UserRow {
  id: number;
  tenant_id: number;
  name: string;
  email: string;
  password_hash: string;
  avatar: string;
  phone: string;
  state: string;
  location: string;
  bio: string;
  /** Bumped on a password change: older sessions stop working. */
  token_version: number;
  created_at: Date;
  updated_at: Date;
}

export interface RoleRow {
  name: string;
  builtin: boolean;
  created_at: Date;
}

export interface RolePermissionRow {
  role: string;
  /** An RBAC object (routes/users.ts RBAC_OBJECTS) or "*". */
  object: string;
  /** What the API accepts (S.Permission) and the built-in roles hold. */
  action: "read" | "*";
}

export interface UserRoleRow {
  user_id: number;
  role: string;
}

export interface RevokedTokenRow {
  jti: string;
  expires_at: Date;
}

export interface SettingRow {
  name: string;
  value: string;
  created_at: Date;
}

export interface PersonalAccessTokenRow {
  id: number;
  tenant_id: number;
  user_id: number;
  name: string;
  bio: string;
  /** SHA-256 (hex) of the token; the token itself is never stored. */
  token_hash: string;
  scopes: string[];
  state: string;
  expired_at: Date;
  last_used_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

export interface SchedulerClusterRow {
  id: number;
  tenant_id: number;
  name: string;
  bio: string;
  config: Static<typeof S.SchedulerClusterConfig>;
  client_config: Static<typeof S.SchedulerClusterClientConfig>;
  seed_client_config: Static<typeof S.SchedulerClusterSeedClientConfig>;
  scopes: Static<typeof S.Scopes>;
  is_default: boolean;
  created_at: Date;
  updated_at: Date;
}

export interface SeedPeerClusterRow {
  id: number;
  tenant_id: number;
  name: string;
  bio: string;
  config: Static<typeof S.SeedPeerClusterConfig>;
  created_at: Date;
  updated_at: Date;
}

export interface SeedPeerClusterSchedulerClusterRow {
  seed_peer_cluster_id: number;
  scheduler_cluster_id: number;
}

export interface SchedulerRow {
  id: number;
  scheduler_cluster_id: number;
  host_name: string;
  idc: string;
  location: string;
  ip: string;
  port: number;
  state: string;
  features: string[];
  /** What the scheduler reported at registration (manager_keep_alive_interval, …). */
  config: JsonObject;
  last_keep_alive_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

export interface SeedPeerRow {
  id: number;
  seed_peer_cluster_id: number;
  host_name: string;
  type: string;
  idc: string;
  location: string;
  ip: string;
  port: number;
  download_port: number;
  object_storage_port: number;
  state: string;
  last_keep_alive_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

export interface PeerRow {
  id: number;
  scheduler_cluster_id: number;
  host_name: string;
  type: string;
  idc: string;
  location: string;
  ip: string;
  port: number;
  download_port: number;
  proxy_port: number;
  object_storage_port: number;
  state: string;
  os: string;
  platform: string;
  platform_family: string;
  platform_version: string;
  kernel_version: string;
  git_version: string;
  git_commit: string;
  build_platform: string;
  created_at: Date;
  updated_at: Date;
}

export interface ApplicationRow {
  id: number;
  tenant_id: number;
  user_id: number | null;
  name: string;
  url: string;
  bio: string;
  priority: Static<typeof S.Priority>;
  created_at: Date;
  updated_at: Date;
}

export interface ConfigRow {
  id: number;
  user_id: number | null;
  name: string;
  value: string;
  bio: string;
  created_at: Date;
  updated_at: Date;
}

interface JobColumns {
  id: number;
  tenant_id: number;
  user_id: number | null;
  /** The group id Dragonfly's API reports (`group_<uuid>`). */
  task_id: string;
  bio: string;
  state: string;
  /** Per-cluster results once finished (Dragonfly's job result JSON); `{}` before. */
  result: JsonObject;
  attempts: number;
  lease_owner: string | null;
  lease_until: Date | null;
  /** The job this one retries (POST /jobs/:id/retry), or null. */
  retry_of: number | null;
  created_at: Date;
  updated_at: Date;
}

/** `args` as jobs/service.ts stored it for the job's type (normalised, secrets split off). */
export type JobRow = JobColumns &
  ({ type: "preheat"; args: PreheatArgs } | { type: "get_task" | "delete_task"; args: TaskArgs } | { type: "sync_peers"; args: Record<string, never> });

export interface JobSchedulerClusterRow {
  job_id: number;
  scheduler_cluster_id: number;
}

export interface AuditRow {
  id: number;
  tenant_id: number | null;
  actor_type: string;
  actor_name: string;
  event_type: string;
  operation: string;
  operated_at: Date;
  state: string;
  path: string;
  status_code: number;
  created_at: Date;
  updated_at: Date;
}

export interface WebhookRow {
  id: number;
  tenant_id: number;
  user_id: number | null;
  name: string;
  bio: string;
  url: string;
  event_types: string[];
  /** Write-only: the key of the delivery signatures. */
  secret: string;
  /** Write-only: the Authorization header sent with every delivery ("" for none). */
  auth_header: string;
  skip_cert_verify: boolean;
  active: boolean;
  created_at: Date;
  updated_at: Date;
}

export interface WebhookDeliveryRow {
  id: number;
  webhook_id: number;
  delivery_id: string;
  event: string;
  /** The JSON body exactly as sent on every attempt. */
  body: string;
  state: string;
  attempts: number;
  status_code: number | null;
  error: string;
  next_attempt_at: Date | null;
  lease_owner: string | null;
  lease_until: Date | null;
  delivered_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

export interface TenantKeyRow {
  tenant_id: number;
  /** 1 for a tenant's first key; each rotation adds the next. */
  version: number;
  /**
   * The AES-256-GCM key wrapped under the manager's key-encryption key (60 bytes: key-wrap.ts);
   * the plain 32-byte key in a row written before version 4 and not yet wrapped. pg returns a
   * Buffer, PGlite a Uint8Array.
   */
  key: Uint8Array;
  created_at: Date;
  wrapped: boolean;
}

export interface HostCommandRow {
  id: number;
  tenant_id: number;
  user_id: number | null;
  type: C.CommandType;
  args: Static<typeof C.CommandArgs>;
  /** Exactly one of host_id and scheduler_cluster_id is set: the command's target. */
  host_id: string | null;
  scheduler_cluster_id: number | null;
  timeout_ms: number;
  state: "PENDING" | "SUCCESS" | "FAILURE";
  error: string;
  created_at: Date;
  updated_at: Date;
}

export interface HostCommandResultRow {
  command_id: number;
  host_id: string;
  hostname: string;
  state: "PENDING" | "SUCCESS" | "FAILURE";
  error: string;
  result: Static<typeof C.CommandOutput>;
  finished_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

export interface SchemaMigrationRow {
  version: number;
  name: string;
  applied_at: Date;
}

/** Every table by name, for code that works on any of them (routes/crud.ts). */
export interface Tables {
  tenants: TenantRow;
  users: UserRow;
  roles: RoleRow;
  role_permissions: RolePermissionRow;
  user_roles: UserRoleRow;
  revoked_tokens: RevokedTokenRow;
  settings: SettingRow;
  personal_access_tokens: PersonalAccessTokenRow;
  scheduler_clusters: SchedulerClusterRow;
  seed_peer_clusters: SeedPeerClusterRow;
  seed_peer_cluster_scheduler_clusters: SeedPeerClusterSchedulerClusterRow;
  schedulers: SchedulerRow;
  seed_peers: SeedPeerRow;
  peers: PeerRow;
  applications: ApplicationRow;
  configs: ConfigRow;
  jobs: JobRow;
  job_scheduler_clusters: JobSchedulerClusterRow;
  audits: AuditRow;
  webhooks: WebhookRow;
  webhook_deliveries: WebhookDeliveryRow;
  tenant_keys: TenantKeyRow;
  host_commands: HostCommandRow;
  host_command_results: HostCommandResultRow;
  schema_migrations: SchemaMigrationRow;
}

export type TableName = keyof Tables;

/** Column names of a table. */
export type Column<K extends TableName> = keyof Tables[K] & string;

/** The tables whose rows are API objects: an integer id and the two timestamps. */
export type ObjectTable = { [K in TableName]: Tables[K] extends { id: number; created_at: Date; updated_at: Date } ? K : never }[TableName];
