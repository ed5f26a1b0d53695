// What the console reads from /api/v1: the fields of the manager's response schemas
// (src/manager/schemas.ts, Dragonfly's snake_case shapes) that the pages show.

export interface Cluster {
  id: number;
  name: string;
  bio: string;
  scopes: Record<string, unknown>;
  scheduler_cluster_id: number;
  seed_peer_cluster_id: number;
  scheduler_cluster_config: Record<string, unknown>;
  seed_peer_cluster_config: Record<string, unknown>;
  peer_cluster_config: Record<string, unknown>;
  is_default: boolean;
  tenant_id: number;
  created_at: string;
  updated_at: string;
}

export interface Scheduler {
  id: number;
  host_name: string;
  idc: string;
  location: string;
  ip: string;
  port: number;
  state: string;
  features: string[];
  last_keep_alive_at: string | null;
  scheduler_cluster_id: number;
}

/** What seed peers and peers share: a host with an upload server. */
interface Host {
  id: number;
  host_name: string;
  type: string;
  ip: string;
  port: number;
  download_port: number;
  state: string;
}

export interface SeedPeer extends Host {
  seed_peer_cluster_id: number;
}

export interface Peer extends Host {
  proxy_port: number;
  os: string;
  platform: string;
  git_version: string;
  scheduler_cluster_id: number;
  updated_at: string;
}

export const JOB_STATES = ["PENDING", "RECEIVED", "STARTED", "RETRY", "SUCCESS", "FAILURE"] as const;
export type JobState = (typeof JOB_STATES)[number];
export const FINAL_JOB_STATES: readonly string[] = ["SUCCESS", "FAILURE"];

/** One cluster's outcome of a job (Dragonfly's job_states entry). */
export interface JobClusterState {
  task_name: string;
  state: string;
  error: string;
  /** preheat: success/failure_tasks by URL; delete_task: by host; get_task: peers; sync_peers: peer_count. */
  results: Array<{
    scheduler_cluster_id?: number;
    task_id?: string;
    success_tasks?: Array<{ url?: string; hostname: string; ip: string; host_type?: string }>;
    failure_tasks?: Array<{ url?: string; hostname: string; ip: string; host_type?: string; description: string }>;
    peers?: Array<{ hostname: string; ip: string; host_type: string; IsFinished: boolean; updated_at: string }>;
    peer_count?: number;
  }>;
  created_at: string;
}

export interface Job {
  id: number;
  task_id: string;
  bio: string;
  type: string;
  state: string;
  args: { type?: string; url?: string; urls?: string[]; scope?: string; [k: string]: unknown };
  /** `canceled`: ended FAILURE by a cancel (POST /jobs/:id/cancel). */
  result: { job_states?: JobClusterState[]; canceled?: boolean; [k: string]: unknown };
  user_id: number | null;
  /** The job this one retries. */
  retry_of: number | null;
  scheduler_clusters: Array<{ id: number; name: string }>;
  created_at: string;
  updated_at: string;
}

export interface User {
  id: number;
  name: string;
  email: string;
  state: string;
  bio: string;
  tenant_id: number;
  created_at: string;
}

export interface Permission {
  object: string;
  action: string;
}

export interface Role {
  role: string;
  permissions: Permission[];
}

export interface PersonalAccessToken {
  id: number;
  name: string;
  bio: string;
  scopes: string[];
  state: string;
  expired_at: string;
  last_used_at: string | null;
  user_id: number;
  created_at: string;
  /** Only in the answer to its creation. */
  token?: string;
}

export interface Audit {
  id: number;
  actor_type: string;
  actor_name: string;
  event_type: string;
  operation: string;
  operated_at: string;
  state: string;
  path: string;
  status_code: number;
}

export interface TokenResponse {
  token: string;
  expire: string;
}

export const WEBHOOK_EVENTS = ["job.created", "job.succeeded", "job.failed"] as const;

export interface Webhook {
  id: number;
  tenant_id: number;
  name: string;
  bio: string;
  url: string;
  event_types: string[];
  skip_cert_verify: boolean;
  active: boolean;
  has_auth_header: boolean;
  created_at: string;
}

export interface WebhookDelivery {
  id: number;
  webhook_id: number;
  delivery_id: string;
  event: string;
  state: "PENDING" | "SUCCESS" | "FAILURE";
  attempts: number;
  status_code: number | null;
  error: string;
  next_attempt_at: string | null;
  delivered_at: string | null;
  created_at: string;
}
