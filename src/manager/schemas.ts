// TypeBox schemas of the REST API, named and shaped as Dragonfly's manager/types (snake_case).
// Response schemas double as an allowlist: fields not listed (password hashes, token hashes)
// can never be serialised.
import { Type, type TSchema } from "@sinclair/typebox";
import { WEBHOOK_EVENTS } from "./webhooks/events.js";
import { SIGNATURE_SCHEME } from "./webhooks/signature.js";

export const Id = Type.Integer({ minimum: 1, maximum: 2147483647 });
export const IdParams = Type.Object({ id: Id });
/**
 * A timestamp in a response. Rows hold a Date (rows.ts), which the serializer writes as an
 * RFC 3339 string: the schema says what goes out, the type what handlers return.
 */
export const Timestamp = Type.Unsafe<Date>({ format: "date-time", type: "string" });
/** A timestamp a client sends: the RFC 3339 string as received. */
export const TimestampInput = Type.String({ format: "date-time" });
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);

export const Page = {
  page: Type.Optional(Type.Integer({ minimum: 1, default: 1 })),
  per_page: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000_000, default: 10 })),
};

const Base = {
  id: Type.Integer(),
  created_at: Timestamp,
  updated_at: Timestamp,
  is_del: Type.Integer(),
};

export const Message = Type.Object({ message: Type.String(), field: Type.Optional(Type.String()) });

// --- cluster configs (manager/types/scheduler_cluster.go, seed_peer_cluster.go) ---
const StringList = Type.Array(Type.String());
const DownloadBlockList = Type.Object({ applications: Type.Optional(StringList), urls: Type.Optional(StringList), tags: Type.Optional(StringList), priorities: Type.Optional(Type.Array(Type.Integer())) });
const UploadBlockList = Type.Object({ applications: Type.Optional(StringList), urls: Type.Optional(StringList), tags: Type.Optional(StringList) });
export const BlockList = Type.Object({
  task: Type.Optional(Type.Object({ download: Type.Optional(DownloadBlockList) })),
  persistent_task: Type.Optional(Type.Object({ download: Type.Optional(DownloadBlockList), upload: Type.Optional(UploadBlockList) })),
  persistent_cache_task: Type.Optional(Type.Object({ download: Type.Optional(DownloadBlockList), upload: Type.Optional(UploadBlockList) })),
});
export const SchedulerClusterConfig = Type.Object({
  candidate_parent_limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 20 })),
  filter_parent_limit: Type.Optional(Type.Integer({ minimum: 10, maximum: 1000 })),
  job_rate_limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
});
/**
 * Ours, not Dragonfly's: a daemon's download.bandwidthLimit and proxy.prefetchBandwidthLimit
 * (bytes/s), applied live by the cluster's daemons (daemon/scheduler/client-config.ts).
 */
const ClientBandwidth = {
  download_bandwidth_limit: Type.Optional(Type.Integer({ minimum: 1 })),
  prefetch_bandwidth_limit: Type.Optional(Type.Integer({ minimum: 1 })),
};
export const SchedulerClusterClientConfig = Type.Object({ load_limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 2000 })), block_list: Type.Optional(BlockList), ...ClientBandwidth });
export const SchedulerClusterSeedClientConfig = Type.Object({ block_list: Type.Optional(BlockList), ...ClientBandwidth });
export const SeedPeerClusterConfig = Type.Object({ load_limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 50_000 })), block_list: Type.Optional(BlockList) });
export const Scopes = Type.Object({
  idc: Type.Optional(Type.String({ maxLength: 1024 })),
  location: Type.Optional(Type.String({ maxLength: 1024 })),
  cidrs: Type.Optional(Type.Array(Type.String())),
  hostnames: Type.Optional(Type.Array(Type.String())),
});
const AnyObject = Type.Object({}, { additionalProperties: true });

// --- scheduler clusters ---
export const SchedulerCluster = Type.Object({
  ...Base,
  tenant_id: Type.Integer(),
  name: Type.String(),
  bio: Type.String(),
  config: AnyObject,
  client_config: AnyObject,
  seed_client_config: AnyObject,
  scopes: AnyObject,
  is_default: Type.Boolean(),
  seed_peer_cluster_ids: Type.Optional(Type.Array(Type.Integer())),
});
export const CreateSchedulerCluster = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 256 }),
  bio: Type.Optional(Type.String({ maxLength: 1024 })),
  config: SchedulerClusterConfig,
  client_config: SchedulerClusterClientConfig,
  seed_client_config: SchedulerClusterSeedClientConfig,
  scopes: Type.Optional(Scopes),
  is_default: Type.Optional(Type.Boolean()),
  seed_peer_cluster_id: Type.Optional(Type.Integer({ minimum: 0 })),
  tenant_id: Type.Optional(Id),
});
export const UpdateSchedulerCluster = Type.Partial(Type.Omit(CreateSchedulerCluster, ["tenant_id"]));

// --- seed peer clusters ---
export const SeedPeerCluster = Type.Object({ ...Base, tenant_id: Type.Integer(), name: Type.String(), bio: Type.String(), config: AnyObject });
export const CreateSeedPeerCluster = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 256 }),
  bio: Type.Optional(Type.String({ maxLength: 1024 })),
  config: SeedPeerClusterConfig,
  tenant_id: Type.Optional(Id),
});
export const UpdateSeedPeerCluster = Type.Partial(Type.Omit(CreateSeedPeerCluster, ["tenant_id"]));

// --- composite clusters (scheduler cluster + seed peer cluster), /api/v1/clusters and /oapi/v1/clusters ---
export const Cluster = Type.Object({
  id: Type.Integer(),
  name: Type.String(),
  bio: Type.String(),
  scopes: AnyObject,
  scheduler_cluster_id: Type.Integer(),
  seed_peer_cluster_id: Type.Integer(),
  scheduler_cluster_config: AnyObject,
  seed_peer_cluster_config: AnyObject,
  peer_cluster_config: AnyObject,
  created_at: Timestamp,
  updated_at: Timestamp,
  is_default: Type.Boolean(),
  tenant_id: Type.Integer(),
});
export const CreateCluster = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 256 }),
  bio: Type.Optional(Type.String({ maxLength: 1024 })),
  scopes: Type.Optional(Scopes),
  scheduler_cluster_config: SchedulerClusterConfig,
  seed_peer_cluster_config: SeedPeerClusterConfig,
  peer_cluster_config: SchedulerClusterClientConfig,
  is_default: Type.Optional(Type.Boolean()),
  tenant_id: Type.Optional(Id),
});
export const UpdateCluster = Type.Partial(Type.Omit(CreateCluster, ["tenant_id"]));

// --- schedulers ---
export const SchedulerFeatures = Type.Array(Type.Union([Type.Literal("schedule"), Type.Literal("preheat")]));
export const Scheduler = Type.Object({
  ...Base,
  config: AnyObject,
  host_name: Type.String(),
  idc: Type.String(),
  location: Type.String(),
  ip: Type.String(),
  port: Type.Integer(),
  state: Type.String(),
  features: Type.Array(Type.String()),
  last_keep_alive_at: Nullable(Timestamp),
  scheduler_cluster_id: Type.Integer(),
});
const Port = Type.Integer({ minimum: 1, maximum: 65535 });
const Ip = Type.String({ anyOf: [{ format: "ipv4" }, { format: "ipv6" }] });
const Hostname = Type.String({ minLength: 1, maxLength: 256, pattern: "^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$" });
export const CreateScheduler = Type.Object({
  config: Type.Optional(Type.Object({ manager_keep_alive_interval: Type.Integer({ minimum: 0 }) })),
  host_name: Hostname,
  idc: Type.Optional(Type.String({ maxLength: 1024 })),
  location: Type.Optional(Type.String({ maxLength: 1024 })),
  ip: Ip,
  port: Port,
  features: Type.Optional(SchedulerFeatures),
  scheduler_cluster_id: Id,
});
export const UpdateScheduler = Type.Partial(Type.Omit(CreateScheduler, ["host_name"]));

// --- seed peers ---
export const SeedPeer = Type.Object({
  ...Base,
  host_name: Type.String(),
  type: Type.String(),
  idc: Type.String(),
  location: Type.String(),
  ip: Type.String(),
  port: Type.Integer(),
  download_port: Type.Integer(),
  object_storage_port: Type.Integer(),
  state: Type.String(),
  seed_peer_cluster_id: Type.Integer(),
});
export const CreateSeedPeer = Type.Object({
  host_name: Hostname,
  type: Type.Literal("super"),
  idc: Type.Optional(Type.String({ maxLength: 1024 })),
  location: Type.Optional(Type.String({ maxLength: 1024 })),
  ip: Ip,
  port: Port,
  download_port: Port,
  object_storage_port: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
  seed_peer_cluster_id: Id,
});
export const UpdateSeedPeer = Type.Partial(Type.Omit(CreateSeedPeer, ["host_name"]));

// --- peers ---
const PeerFields = {
  host_name: Type.String(),
  type: Type.String(),
  idc: Type.String(),
  location: Type.String(),
  ip: Type.String(),
  port: Type.Integer(),
  download_port: Type.Integer(),
  proxy_port: Type.Integer(),
  object_storage_port: Type.Integer(),
  state: Type.String(),
  os: Type.String(),
  platform: Type.String(),
  platform_family: Type.String(),
  platform_version: Type.String(),
  kernel_version: Type.String(),
  git_version: Type.String(),
  git_commit: Type.String(),
  build_platform: Type.String(),
  scheduler_cluster_id: Type.Integer(),
};
export const Peer = Type.Object({ ...Base, ...PeerFields });
const Text = Type.Optional(Type.String({ maxLength: 256 }));
export const CreatePeer = Type.Object({
  host_name: Hostname,
  type: Type.Union([Type.Literal("super"), Type.Literal("normal")]),
  idc: Type.Optional(Type.String({ maxLength: 1024 })),
  location: Type.Optional(Type.String({ maxLength: 1024 })),
  ip: Ip,
  port: Port,
  download_port: Port,
  proxy_port: Port,
  object_storage_port: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
  state: Type.Optional(Type.Union([Type.Literal("active"), Type.Literal("inactive")])),
  os: Text,
  platform: Text,
  platform_family: Text,
  platform_version: Text,
  kernel_version: Text,
  git_version: Text,
  git_commit: Text,
  build_platform: Text,
  scheduler_cluster_id: Id,
});

// --- applications ---
const PriorityValue = Type.Integer({ minimum: 0, maximum: 20 });
export const Priority = Type.Object({
  value: PriorityValue,
  urls: Type.Optional(Type.Array(Type.Object({ regex: Type.String({ minLength: 1, maxLength: 1024 }), value: PriorityValue }))),
});
export const Application = Type.Object({ ...Base, tenant_id: Type.Integer(), name: Type.String(), url: Type.String(), bio: Type.String(), priority: AnyObject, user_id: Nullable(Type.Integer()) });
export const CreateApplication = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 256 }),
  url: Type.String({ minLength: 1, maxLength: 1024 }),
  bio: Type.Optional(Type.String({ maxLength: 1024 })),
  priority: Priority,
  user_id: Type.Optional(Type.Integer({ minimum: 0 })),
  tenant_id: Type.Optional(Id),
});
export const UpdateApplication = Type.Partial(Type.Omit(CreateApplication, ["tenant_id"]));

// --- configs ---
export const Config = Type.Object({ ...Base, name: Type.String(), value: Type.String(), bio: Type.String(), user_id: Nullable(Type.Integer()) });
export const CreateConfig = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 256 }),
  value: Type.String({ minLength: 1, maxLength: 1024 }),
  bio: Type.Optional(Type.String({ maxLength: 1024 })),
  user_id: Type.Optional(Type.Integer({ minimum: 0 })),
});
export const UpdateConfig = Type.Partial(CreateConfig);

// --- users ---
export const User = Type.Object({
  ...Base,
  tenant_id: Type.Integer(),
  email: Type.String(),
  name: Type.String(),
  avatar: Type.String(),
  phone: Type.String(),
  state: Type.String(),
  location: Type.String(),
  bio: Type.String(),
});
export const Password = Type.String({ minLength: 8, maxLength: 20 });
export const UserName = Type.String({ minLength: 3, maxLength: 10, pattern: "^[A-Za-z0-9_.-]+$" });
export const SignIn = Type.Object({ name: UserName, password: Password });
export const SignUp = Type.Object({
  name: UserName,
  password: Password,
  email: Type.String({ format: "email", maxLength: 256 }),
  phone: Type.Optional(Type.String({ maxLength: 256 })),
  avatar: Type.Optional(Type.String({ maxLength: 1024 })),
  location: Type.Optional(Type.String({ maxLength: 1024 })),
  bio: Type.Optional(Type.String({ maxLength: 1024 })),
});
export const CreateUser = Type.Object({ ...SignUp.properties, tenant_id: Type.Optional(Id), roles: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 100 }))) });
export const UpdateUser = Type.Object({
  email: Type.Optional(Type.String({ format: "email", maxLength: 256 })),
  phone: Type.Optional(Type.String({ maxLength: 256 })),
  avatar: Type.Optional(Type.String({ maxLength: 1024 })),
  location: Type.Optional(Type.String({ maxLength: 1024 })),
  bio: Type.Optional(Type.String({ maxLength: 1024 })),
  state: Type.Optional(Type.Union([Type.Literal("enable"), Type.Literal("disable")])),
});
export const ResetPassword = Type.Object({ old_password: Type.Optional(Password), new_password: Password });
export const TokenResponse = Type.Object({ token: Type.String(), expire: Type.String() });

// --- roles & permissions (casbin-style object/action pairs) ---
export const Permission = Type.Object({ object: Type.String({ minLength: 1, maxLength: 100 }), action: Type.Union([Type.Literal("read"), Type.Literal("*")]) });
export const CreateRole = Type.Object({ role: Type.String({ minLength: 1, maxLength: 100, pattern: "^[A-Za-z0-9_-]+$" }), permissions: Type.Array(Permission) });
export const Role = Type.Object({ role: Type.String(), permissions: Type.Array(Permission) });

// --- personal access tokens ---
export const PatScope = Type.Union([Type.Literal("job"), Type.Literal("cluster")]);
export const PersonalAccessToken = Type.Object({
  ...Base,
  tenant_id: Type.Integer(),
  name: Type.String(),
  bio: Type.String(),
  scopes: Type.Array(Type.String()),
  state: Type.String(),
  expired_at: Timestamp,
  last_used_at: Nullable(Timestamp),
  user_id: Type.Integer(),
  /** Only in the response to POST: the secret is never stored nor shown again. */
  token: Type.Optional(Type.String()),
});
export const CreatePersonalAccessToken = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 256 }),
  bio: Type.Optional(Type.String({ maxLength: 1024 })),
  scopes: Type.Optional(Type.Array(PatScope)),
  expired_at: TimestampInput,
  user_id: Type.Optional(Type.Integer({ minimum: 0 })),
});
export const UpdatePersonalAccessToken = Type.Object({
  bio: Type.Optional(Type.String({ maxLength: 1024 })),
  scopes: Type.Optional(Type.Array(PatScope)),
  state: Type.Optional(Type.Union([Type.Literal("active"), Type.Literal("inactive")])),
  expired_at: Type.Optional(TimestampInput),
  user_id: Type.Optional(Type.Integer({ minimum: 0 })),
});

// --- jobs ---
export const JobType = Type.Union([Type.Literal("preheat"), Type.Literal("sync_peers"), Type.Literal("get_task"), Type.Literal("delete_task")]);
export const CreateJob = Type.Object({
  bio: Type.Optional(Nullable(Type.String({ maxLength: 1024 }))),
  type: JobType,
  args: Type.Optional(Nullable(Type.Object({}, { additionalProperties: true }))),
  user_id: Type.Optional(Nullable(Type.Integer({ minimum: 0 }))),
  // Harbor sends `null` when no cluster is chosen: that means every cluster.
  scheduler_cluster_ids: Type.Optional(Nullable(Type.Array(Id, { maxItems: 1000 }))),
  seed_peer_cluster_ids: Type.Optional(Nullable(Type.Array(Id, { maxItems: 1000 }))),
});
export const UpdateJob = Type.Object({ bio: Type.Optional(Type.String({ maxLength: 1024 })), user_id: Type.Optional(Type.Integer({ minimum: 0 })) });
const ClusterRef = Type.Object({ id: Type.Integer(), name: Type.String() });
export const Job = Type.Object({
  ...Base,
  tenant_id: Type.Integer(),
  task_id: Type.String(),
  bio: Type.String(),
  type: Type.String(),
  state: Type.String(),
  args: AnyObject,
  result: AnyObject,
  user_id: Nullable(Type.Integer()),
  /** Damselfly extension: the job this one retries (POST /jobs/:id/retry), or null. */
  retry_of: Nullable(Type.Integer()),
  scheduler_clusters: Type.Array(ClusterRef),
  seed_peer_clusters: Type.Array(ClusterRef),
});

// --- audits ---
export const Audit = Type.Object({
  ...Base,
  tenant_id: Nullable(Type.Integer()),
  actor_type: Type.String(),
  actor_name: Type.String(),
  event_type: Type.String(),
  operation: Type.String(),
  operated_at: Timestamp,
  state: Type.String(),
  path: Type.String(),
  status_code: Type.Integer(),
});

// --- tenants (Damselfly extension: Dragonfly has no tenancy) ---
export const Tenant = Type.Object({ id: Type.Integer(), name: Type.String(), bio: Type.String(), created_at: Timestamp, updated_at: Timestamp });
export const CreateTenant = Type.Object({ name: Type.String({ minLength: 1, maxLength: 256, pattern: "^[A-Za-z0-9_.-]+$" }), bio: Type.Optional(Type.String({ maxLength: 1024 })) });
/** A tenant's at-rest key version as the REST API shows it: never the key itself (issue 21). */
export const TenantKeyVersion = Type.Object({ tenant_id: Type.Integer(), version: Type.Integer(), created_at: Timestamp });

// --- webhooks (Damselfly extension: Dragonfly's manager has no notifications; shaped as Harbor's webhook policies) ---
export const WebhookEventType = Type.Union(WEBHOOK_EVENTS.map((e) => Type.Literal(e)));
const WebhookSecret = Type.String({
  minLength: 8,
  maxLength: 256,
  description: `Key of the HMAC-SHA256 signature of every delivery; write-only (never returned). ${SIGNATURE_SCHEME}`,
});
export const Webhook = Type.Object(
  {
    ...Base,
    tenant_id: Type.Integer(),
    user_id: Nullable(Type.Integer()),
    name: Type.String(),
    bio: Type.String(),
    url: Type.String(),
    event_types: Type.Array(Type.String()),
    skip_cert_verify: Type.Boolean(),
    active: Type.Boolean(),
    /** Whether an Authorization header is sent (its value, like the secret, is never returned). */
    has_auth_header: Type.Boolean(),
  },
  { description: `A subscription of a URL to job events. ${SIGNATURE_SCHEME}` },
);
export const CreateWebhook = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 256 }),
    bio: Type.Optional(Type.String({ maxLength: 1024 })),
    url: Type.String({ minLength: 1, maxLength: 2048, description: "http(s) URL the events are POSTed to; no credentials in it (use auth_header)" }),
    event_types: Type.Array(WebhookEventType, { minItems: 1, uniqueItems: true }),
    secret: WebhookSecret,
    auth_header: Type.Optional(Type.String({ maxLength: 1024, description: "sent as the Authorization header of every delivery; write-only" })),
    skip_cert_verify: Type.Optional(Type.Boolean({ description: "accept any certificate of an https URL (Harbor's skip_cert_verify); off by default" })),
    active: Type.Optional(Type.Boolean()),
    tenant_id: Type.Optional(Id),
  },
  { description: `Subscribe a URL to job events. ${SIGNATURE_SCHEME}` },
);
export const UpdateWebhook = Type.Partial(Type.Omit(CreateWebhook, ["tenant_id"]));
export const WebhookDeliveryState = Type.Union([Type.Literal("PENDING"), Type.Literal("SUCCESS"), Type.Literal("FAILURE")]);
export const WebhookDelivery = Type.Object({
  id: Type.Integer(),
  webhook_id: Type.Integer(),
  delivery_id: Type.String({ description: "the X-Damselfly-Delivery header: the same on every attempt" }),
  event: Type.String(),
  state: Type.String(),
  attempts: Type.Integer(),
  status_code: Nullable(Type.Integer({ description: "HTTP status of the last attempt; null when it got no answer" })),
  error: Type.String({ description: "why the last attempt failed; empty after a success" }),
  next_attempt_at: Nullable(Timestamp),
  delivered_at: Nullable(Timestamp),
  created_at: Timestamp,
  updated_at: Timestamp,
});
export const WebhookDeliveryParams = Type.Object({ id: Id, delivery: Id });
