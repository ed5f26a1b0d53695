// What each job type does for one scheduler cluster. A job fans out over its clusters; each
// cluster's outcome becomes one entry of `result.job_states` in Dragonfly's shape (Harbor reads
// `job_states[].results[].success_tasks/failure_tasks` and `job_states[].error`).
import { status, type ServiceError } from "@grpc/grpc-js";
import { randomUUID } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { PREHEAT_FAILED } from "../../common/grpc/preheat-failed.js";
import { taskIdFromContent, taskIdFromUrl } from "../../common/ids.js";
import type { Logger } from "../../common/logger.js";
import { SsrfError, type SsrfPolicy } from "../../common/ssrf.js";
import type { Database, Queryable } from "../db/database.js";
import type { Host } from "../../gen/common/v2/common.js";
import { Priority } from "../../gen/common/v2/common.js";
import type { ListHostsResponse, PreheatFileRequest, StatFileRequest, StatFileResponse } from "../../gen/scheduler/v2/scheduler.js";
import type { Task } from "../../gen/common/v2/common.js";
import type { Empty } from "../../gen/google/protobuf/empty.js";
import type { PreheatArgs, TaskArgs } from "./args.js";
import { checkSourceUrl, sourceOptions, type PreheatSecrets, type SourceOptions, type SourceScheme } from "./source-args.js";
import type { ListTaskEntriesResponse } from "../../gen/dfdaemon/v2/dfdaemon.js";
import { activeScheduler, call, mapLimit, type ClientPool, type ActiveScheduler } from "./clients.js";
import { ImageResolveError, type ImageResolver } from "../../common/oci/resolver.js";
import { errorMessage } from "../../common/errors.js";

export interface JobState {
  task_name: string;
  task_uuid: string;
  state: "SUCCESS" | "FAILURE";
  error: string;
  results: unknown[];
  created_at: string;
  ttl: number;
}

export interface ExecutorDeps {
  db: Database;
  clients: ClientPool;
  ssrf: SsrfPolicy;
  images: ImageResolver;
  logger: Logger;
  /** How often to ask the scheduler whether a preheated file is cached yet (ms, doubles to 16×). */
  statIntervalMs: number;
  /** Per-RPC deadline (ms). */
  rpcTimeoutMs: number;
  /** Aborted when the job is canceled: no RPC starts after it, and waiting stops (call(), sleep). */
  signal?: AbortSignal;
}

export interface PreheatSuccessTask {
  url: string;
  hostname: string;
  ip: string;
}
export interface PreheatFailureTask extends PreheatSuccessTask {
  description: string;
}

const isGrpc = (e: unknown): e is ServiceError => typeof e === "object" && e !== null && "code" in e && typeof (e).code === "number";
const message = (e: unknown) => (isGrpc(e) ? (e.details ?? e.message) : errorMessage(e));
const splitFilter = (s: string) => s.split("&").filter(Boolean);
/** Waits `ms`, or less when `signal` aborts first. */
const sleep = (ms: number, signal?: AbortSignal) => delay(ms, undefined, signal ? { signal } : {}).catch(() => undefined);

function state(taskName: string, results: unknown[], error: string): JobState {
  return { task_name: taskName, task_uuid: `task_${randomUUID()}`, state: error ? "FAILURE" : "SUCCESS", error, results, created_at: new Date().toISOString(), ttl: 0 };
}

async function requireScheduler(deps: ExecutorDeps, clusterId: number, feature: "preheat" | undefined): Promise<ActiveScheduler> {
  const s = await activeScheduler(deps.db, clusterId, feature);
  if (!s) throw new Error(`scheduler cluster ${clusterId} has no active scheduler${feature ? ` with feature "${feature}"` : ""}`);
  return s;
}

/** The scheme of a stored (already validated) file URL, and whether it names a directory. */
const sourceOf = (url: string) => checkSourceUrl(new URL(url), "url");

/**
 * Where the seed peers will go for `url`, checked against the manager's SSRF policy as for
 * http(s); returns why not, or undefined. An object store is reached at its endpoint (the bucket
 * is no host), HDFS at the namenode's WebHDFS address, a hub at its base URL; without an
 * endpoint or base URL, at the provider's public one (the seed's configured hub endpoint).
 */
async function unreachable(deps: ExecutorDeps, url: string, scheme: SourceScheme, o: SourceOptions): Promise<string | undefined> {
  const [reached, what] =
    scheme === "http" ? [url, ""]
    : scheme === "hdfs" ? [`http://${new URL(url).host}/`, "namenode: "]
    : scheme === "hf" || scheme === "modelscope" ? [(o.huggingFace ?? o.modelScope)?.baseUrl, "hub base URL: "]
    : [o.objectStorage?.endpoint, "storage endpoint: "];
  try {
    if (reached) await deps.ssrf.checkUrl(reached);
    return undefined;
  } catch (e) {
    return e instanceof SsrfError ? `${what}${e.message}` : `invalid preheat URL: ${message(e)}`;
  }
}

/** One URL's preheat outcome: failed on the scheduler's behalf, naming why. */
type Outcome = { ok: PreheatSuccessTask[]; failed: PreheatFailureTask[] };
const failedTask = (s: ActiveScheduler, url: string, description: string): Outcome => ({ ok: [], failed: [{ url, hostname: s.host_name, ip: s.ip, description }] });

/** Preheat one URL through a scheduler, then wait until a peer reports it cached. */
async function preheatUrl(
  deps: ExecutorDeps,
  s: ActiveScheduler,
  args: PreheatArgs,
  url: string,
  headers: Record<string, string>,
  deadline: number,
  source: SourceOptions,
): Promise<Outcome> {
  const fail = (description: string) => failedTask(s, url, description);
  const refused = await unreachable(deps, url, sourceOf(url).scheme, source);
  if (refused) return fail(refused);
  const client = deps.clients.scheduler(s.ip, s.port);
  const remainingNs = Math.max(1, deadline - Date.now()) * 1e6;
  const req: PreheatFileRequest = {
    url,
    pieceLength: args.piece_length,
    tag: args.tag || undefined,
    application: args.application || undefined,
    filteredQueryParams: splitFilter(args.filtered_query_params),
    header: headers,
    scope: args.scope,
    ips: args.ips,
    percentage: args.percentage,
    count: args.count,
    concurrentTaskCount: args.concurrent_task_count,
    concurrentPeerCount: args.concurrent_peer_count,
    timeout: { seconds: Math.floor(remainingNs / 1e9), nanos: Math.floor(remainingNs % 1e9) },
    priority: Priority.LEVEL0,
    certificateChain: [],
    insecureSkipVerify: false,
    ...source,
  };
  try {
    await call<Empty>((md, o, cb) => client.preheatFile(req, md, o, cb), deps.rpcTimeoutMs, deps.signal);
  } catch (e) {
    return fail(`PreheatFile on scheduler ${s.host_name}: ${message(e)}`);
  }
  const stat: StatFileRequest = {
    url,
    pieceLength: args.piece_length,
    tag: args.tag || undefined,
    application: args.application || undefined,
    filteredQueryParams: splitFilter(args.filtered_query_params),
    header: headers,
    concurrentPeerCount: args.concurrent_peer_count,
    certificateChain: [],
    insecureSkipVerify: false,
    ...source,
  };
  // PreheatFile only dispatches the downloads; the job succeeds when a peer holds the file.
  let wait = deps.statIntervalMs;
  for (;;) {
    if (deps.signal?.aborted) return fail(errorMessage(deps.signal.reason));
    try {
      const res = await call<StatFileResponse>((md, o, cb) => client.statFile(stat, md, o, cb), deps.rpcTimeoutMs, deps.signal);
      const done = res.peers.filter((p) => p.cachedFiles.some((f) => f.url === url && f.isFinished === true));
      if (done.length > 0) return { ok: done.map((p) => ({ url, hostname: p.hostname, ip: p.ip })), failed: [] };
    } catch (e) {
      // A scheduler without StatFile cannot confirm; its acceptance of PreheatFile is the result.
      if (isGrpc(e) && e.code === status.UNIMPLEMENTED) return { ok: [{ url, hostname: s.host_name, ip: s.ip }], failed: [] };
      // The scheduler's preheat failed on every peer it went to (a seed peer killed and no
      // other to take over): the file will not appear, and waiting out the job's timeout
      // would only hide why.
      if (isGrpc(e) && e.code === PREHEAT_FAILED) return fail(`scheduler ${s.host_name}: ${message(e)}`);
      deps.logger.warn({ url, scheduler: s.host_name, err: message(e) }, "StatFile failed; retrying");
    }
    if (Date.now() + wait > deadline) return fail(`timed out waiting for a peer to cache the file`);
    await sleep(wait, deps.signal);
    wait = Math.min(wait * 2, deps.statIntervalMs * 16);
  }
}

/**
 * The files below a directory URL, listed by a seed peer (DfdaemonUpload.ListTaskEntries, as
 * Dragonfly's dfget -r has its daemon list): the seeds hold the back-to-source credentials path
 * and reach the origin the way the preheat will. Seeds are asked in the scheduler's host order;
 * one that is unreachable hands the listing to the next. Entries not below the directory are
 * refused, as dfget refuses them; a directory without files fails.
 */
async function listDirectory(deps: ExecutorDeps, s: ActiveScheduler, url: string, headers: Record<string, string>, source: SourceOptions, deadline: number): Promise<string[]> {
  const seeds = (await listHosts(deps, s)).filter((h) => hostType(h) === "super").sort((a, b) => a.id.localeCompare(b.id));
  if (seeds.length === 0) throw new Error(`no seed peer in scheduler cluster ${s.scheduler_cluster_id} to list ${url}`);
  const remainingMs = Math.max(1, deadline - Date.now());
  const req = { taskId: randomUUID(), url, requestHeader: headers, certificateChain: [], timeout: { seconds: Math.floor(remainingMs / 1000), nanos: (remainingMs % 1000) * 1e6 }, ...source };
  let res: ListTaskEntriesResponse | undefined;
  for (const [i, h] of seeds.entries()) {
    const d = deps.clients.daemon(h.ip, h.port);
    try {
      res = await call<ListTaskEntriesResponse>((md, o, cb) => d.listTaskEntries(req, md, o, cb), remainingMs, deps.signal);
      break;
    } catch (e) {
      if (isGrpc(e) && e.code === status.UNAVAILABLE && i < seeds.length - 1) continue;
      throw new Error(`listing on seed peer ${h.hostname} (${h.ip}) failed: ${message(e)}`);
    }
  }
  const below = url.endsWith("/") ? url : `${url}/`;
  const files = (res?.entries ?? []).filter((e) => !e.isDir).map((e) => e.url);
  const outside = files.find((f) => !f.startsWith(below));
  if (outside !== undefined) throw new Error(`the seed peer listed "${outside}", which is not below the directory`);
  // A store cannot tell an empty directory from a mistyped prefix: either way nothing is warm.
  if (files.length === 0) throw new Error("the directory lists no files; nothing was preheated");
  return files;
}

/**
 * `secrets`: the secrets split off the stored args (secrets.ts). A file preheat's directory URL
 * becomes the files below it, each preheated as a task of its own; a directory that cannot be
 * listed is a failure task of its own, and the other URLs are still preheated.
 */
export async function runPreheat(deps: ExecutorDeps, clusterId: number, args: PreheatArgs, secrets?: PreheatSecrets): Promise<JobState> {
  const deadline = Date.now() + args.timeout / 1e6;
  let urls: string[];
  let headers = args.headers;
  try {
    const s = await requireScheduler(deps, clusterId, "preheat");
    const listed: Outcome[] = [];
    if (args.type === "image") {
      const image = await deps.images.resolve(args.url, { headers: args.headers, username: args.username, password: args.password }, args.platform || undefined);
      urls = image.blobUrls;
      headers = image.headers;
    } else {
      urls = [];
      for (const url of new Set([...(args.url ? [args.url] : []), ...args.urls])) {
        const src = sourceOf(url);
        if (!src.directory) {
          urls.push(url);
          continue;
        }
        const source = sourceOptions(src.scheme, args, secrets);
        const refused = await unreachable(deps, url, src.scheme, source);
        if (refused) {
          listed.push(failedTask(s, url, refused));
          continue;
        }
        try {
          urls.push(...(await listDirectory(deps, s, url, headers, source, deadline)));
        } catch (e) {
          listed.push(failedTask(s, url, message(e)));
        }
      }
      urls = [...new Set(urls)];
    }
    const outcomes = [...listed, ...(await mapLimit(urls, args.concurrent_task_count, (url) => preheatUrl(deps, s, args, url, headers, deadline, sourceOptions(sourceOf(url).scheme, args, secrets))))];
    const success_tasks = outcomes.flatMap((o) => o.ok);
    const failure_tasks = outcomes.flatMap((o) => o.failed);
    const first = failure_tasks[0];
    const error = first ? `${failure_tasks.length} of ${urls.length + listed.length} preheat tasks failed: ${first.url}: ${first.description}` : "";
    return state("preheat", [{ success_tasks, failure_tasks, scheduler_cluster_id: clusterId }], error);
  } catch (e) {
    const why = e instanceof ImageResolveError || e instanceof SsrfError ? e.message : message(e);
    return state("preheat", [{ success_tasks: [], failure_tasks: [], scheduler_cluster_id: clusterId }], why);
  }
}

function taskIdOf(args: TaskArgs): string {
  if (args.task_id) return args.task_id;
  if (args.content_for_calculating_task_id !== undefined) return taskIdFromContent(args.content_for_calculating_task_id);
  return taskIdFromUrl({ url: args.url, tag: args.tag || undefined, application: args.application || undefined, pieceLength: args.piece_length, filteredQueryParams: splitFilter(args.filtered_query_params) });
}

/** The hosts a scheduler knows (those that announced themselves to it and have not left). */
export async function listHosts(deps: Pick<ExecutorDeps, "clients" | "rpcTimeoutMs" | "signal">, s: ActiveScheduler): Promise<Host[]> {
  const client = deps.clients.scheduler(s.ip, s.port);
  return (await call<ListHostsResponse>((md, o, cb) => client.listHosts({}, md, o, cb), deps.rpcTimeoutMs, deps.signal)).hosts;
}

const hostType = (h: Host) => (h.type === 0 ? "normal" : "super");

/** get_task: which peers hold the task (Dragonfly's GetTaskResponse per cluster). */
export async function runGetTask(deps: ExecutorDeps, clusterId: number, args: TaskArgs): Promise<JobState> {
  try {
    const s = await requireScheduler(deps, clusterId, undefined);
    const taskId = taskIdOf(args);
    const hosts = await listHosts(deps, s);
    const peers = (
      await mapLimit(hosts, args.concurrent_peer_count, async (h) => {
        const d = deps.clients.daemon(h.ip, h.port);
        try {
          const task = await call<Task>((md, o, cb) => d.statTask({ taskId }, md, o, cb), deps.rpcTimeoutMs, deps.signal);
          const now = new Date().toISOString();
          return [{ id: h.id, hostname: h.hostname, ip: h.ip, host_type: hostType(h), created_at: task.createdAt?.toISOString() ?? now, updated_at: task.updatedAt?.toISOString() ?? now, IsFinished: task.state === "Succeeded" }];
        } catch {
          return [];
        }
      })
    ).flat();
    return state("get_task", [{ peers, task_id: taskId, scheduler_cluster_id: clusterId }], "");
  } catch (e) {
    return state("get_task", [{ peers: [], scheduler_cluster_id: clusterId }], message(e));
  }
}

/** delete_task: every peer of the cluster drops its copy of the task. */
export async function runDeleteTask(deps: ExecutorDeps, clusterId: number, args: TaskArgs): Promise<JobState> {
  try {
    const s = await requireScheduler(deps, clusterId, undefined);
    const taskId = taskIdOf(args);
    const hosts = await listHosts(deps, s);
    const outcomes = await mapLimit(hosts, 8, async (h) => {
      const d = deps.clients.daemon(h.ip, h.port);
      try {
        await call<Empty>((md, o, cb) => d.deleteTask({ taskId }, md, o, cb), deps.rpcTimeoutMs, deps.signal);
        return { ok: { hostname: h.hostname, ip: h.ip, host_type: hostType(h) } };
      } catch (e) {
        if (isGrpc(e) && e.code === status.NOT_FOUND) return {};
        return { failed: { hostname: h.hostname, ip: h.ip, host_type: hostType(h), description: message(e) } };
      }
    });
    const success_tasks = outcomes.flatMap((o) => (o.ok ? [o.ok] : []));
    const failure_tasks = outcomes.flatMap((o) => (o.failed ? [o.failed] : []));
    return state("delete_task", [{ success_tasks, failure_tasks, task_id: taskId, scheduler_cluster_id: clusterId }], failure_tasks.length > 0 ? `${failure_tasks.length} peers failed to delete the task` : "");
  } catch (e) {
    return state("delete_task", [{ success_tasks: [], failure_tasks: [], scheduler_cluster_id: clusterId }], message(e));
  }
}

/**
 * A scheduler's hosts become `peers` rows of its cluster (active again if they were not): what
 * sync_peers does for every host, and GetTenantKey's lookup (peer-lookup.ts) for the one asking.
 */
export async function recordPeers(q: Queryable, clusterId: number, hosts: readonly Host[]): Promise<void> {
  for (const h of hosts) {
    await q.query(
      `INSERT INTO peers (host_name, type, idc, location, ip, port, download_port, proxy_port, state, os, platform, platform_family, platform_version, kernel_version, git_version, git_commit, build_platform, scheduler_cluster_id)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active', $9, $10, $11, $12, $13, $14, $15, $16, $17)
       ON CONFLICT (host_name, ip, scheduler_cluster_id) DO UPDATE SET type = EXCLUDED.type, idc = EXCLUDED.idc, location = EXCLUDED.location, port = EXCLUDED.port,
         download_port = EXCLUDED.download_port, proxy_port = EXCLUDED.proxy_port, state = 'active', os = EXCLUDED.os, platform = EXCLUDED.platform,
         platform_family = EXCLUDED.platform_family, platform_version = EXCLUDED.platform_version, kernel_version = EXCLUDED.kernel_version,
         git_version = EXCLUDED.git_version, git_commit = EXCLUDED.git_commit, build_platform = EXCLUDED.build_platform, updated_at = now()`,
      [
        h.hostname,
        hostType(h),
        h.network?.idc ?? "",
        h.network?.location ?? "",
        h.ip,
        h.port,
        h.downloadPort,
        h.proxyPort,
        h.os,
        h.platform,
        h.platformFamily,
        h.platformVersion,
        h.kernelVersion,
        h.build?.gitVersion ?? "",
        h.build?.gitCommit ?? "",
        h.build?.platform ?? "",
        clusterId,
      ],
    );
  }
}

/** sync_peers: the scheduler's host list becomes the cluster's `peers` rows. */
export async function runSyncPeers(deps: ExecutorDeps, clusterId: number): Promise<JobState> {
  try {
    const s = await requireScheduler(deps, clusterId, undefined);
    const hosts = await listHosts(deps, s);
    await deps.db.transaction(async (tx) => {
      await recordPeers(tx, clusterId, hosts);
      // Hosts the scheduler no longer knows are gone.
      const seen = hosts.map((h) => `${h.hostname}\u001f${h.ip}`);
      await tx.query(
        `UPDATE peers SET state = 'inactive', updated_at = now() WHERE scheduler_cluster_id = $1 AND state = 'active' AND NOT (host_name || chr(31) || ip = ANY(string_to_array($2, chr(30))))`,
        [clusterId, seen.join("\u001e")],
      );
    });
    return state("sync_peers", [{ scheduler_cluster_id: clusterId, peer_count: hosts.length }], "");
  } catch (e) {
    return state("sync_peers", [{ scheduler_cluster_id: clusterId, peer_count: 0 }], message(e));
  }
}
