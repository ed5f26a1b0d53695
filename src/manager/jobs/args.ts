// Job arguments as Dragonfly's manager/types/job.go defines them, validated and normalised
// (defaults filled) before a job is stored. Harbor's preheat provider sends Go zero values —
// empty strings, `timeout: 0`, `scheduler_cluster_ids: null` — and an extra `concurrent_count`;
// zero values mean "default" and unknown keys are dropped.
import { isIP } from "node:net";
import { Type, type Static, type TSchema } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { parseDuration } from "../../common/config.js";
import { MANIFEST_PATH } from "../../common/oci/resolver.js";
import { MAX_PIECE_LENGTH, MIN_PIECE_LENGTH } from "../../common/piece.js";
import { badRequest } from "../errors.js";
import type { ObjectStorageScheme } from "../../common/object-storage.js";
import { isModelHubScheme } from "../../common/model-hub.js";
import { ObjectStorageArgsSchema, parseObjectStorageArgs, redactObjectStorage } from "./object-storage-args.js";
import { checkSourceUrl, HdfsArgsSchema, HubArgsSchema, parseHdfsArgs, parseHubArgs, redactSources, type SourceArgs, type SourceScheme } from "./source-args.js";

export const DEFAULT_JOB_TIMEOUT_NS = 60 * 60 * 1e9;
export const DEFAULT_CONCURRENT_TASK_COUNT = 8;
export const DEFAULT_CONCURRENT_PEER_COUNT = 500;
export const SCOPES = ["single_seed_peer", "all_seed_peers", "all_peers"] as const;

import { DEFAULT_FILTERED_QUERY_PARAMS } from "../../common/ids.js";

export { DEFAULT_FILTERED_QUERY_PARAMS };

const Opt = <T extends TSchema>(t: T) => Type.Optional(Type.Union([t, Type.Null()]));
const PieceLength = Type.Integer({ minimum: MIN_PIECE_LENGTH, maximum: MAX_PIECE_LENGTH });
const Timeout = Type.Union([Type.Integer({ minimum: 0 }), Type.String()]);
const SourceUrl = Type.String({ maxLength: 8192 });

const PreheatArgsSchema = Type.Object({
  type: Type.Union([Type.Literal("image"), Type.Literal("file")]),
  url: Opt(SourceUrl),
  urls: Opt(Type.Array(SourceUrl, { maxItems: 1000 })),
  piece_length: Opt(PieceLength),
  tag: Opt(Type.String({ maxLength: 1024 })),
  application: Opt(Type.String({ maxLength: 1024 })),
  filtered_query_params: Opt(Type.String({ maxLength: 4096 })),
  headers: Opt(Type.Record(Type.String(), Type.String())),
  username: Opt(Type.String({ maxLength: 1024 })),
  password: Opt(Type.String({ maxLength: 4096 })),
  platform: Opt(Type.String({ maxLength: 256 })),
  scope: Opt(Type.Union([Type.Literal(""), ...SCOPES.map((s) => Type.Literal(s))])),
  ips: Opt(Type.Array(Type.String(), { maxItems: 100 })),
  percentage: Opt(Type.Integer({ minimum: 1, maximum: 100 })),
  count: Opt(Type.Integer({ minimum: 1, maximum: 200 })),
  concurrent_task_count: Opt(Type.Integer({ minimum: 0, maximum: 100 })),
  concurrent_peer_count: Opt(Type.Integer({ minimum: 0, maximum: 1000 })),
  timeout: Opt(Timeout),
  object_storage: Opt(ObjectStorageArgsSchema),
  hdfs: Opt(HdfsArgsSchema),
  hugging_face: Opt(HubArgsSchema),
  model_scope: Opt(HubArgsSchema),
});

const TaskArgsSchema = Type.Object({
  task_id: Opt(Type.String({ maxLength: 256 })),
  url: Opt(SourceUrl),
  piece_length: Opt(PieceLength),
  tag: Opt(Type.String({ maxLength: 1024 })),
  application: Opt(Type.String({ maxLength: 1024 })),
  filtered_query_params: Opt(Type.String({ maxLength: 4096 })),
  content_for_calculating_task_id: Opt(Type.String({ maxLength: 1_000_000 })),
  concurrent_peer_count: Opt(Type.Integer({ minimum: 0, maximum: 1000 })),
  timeout: Opt(Timeout),
});

const compiledPreheat = TypeCompiler.Compile(PreheatArgsSchema);
const compiledTask = TypeCompiler.Compile(TaskArgsSchema);

export interface PreheatArgs extends SourceArgs {
  type: "image" | "file";
  url: string;
  urls: string[];
  piece_length?: number;
  tag: string;
  application: string;
  filtered_query_params: string;
  headers: Record<string, string>;
  username: string;
  password: string;
  platform: string;
  scope: (typeof SCOPES)[number];
  ips: string[];
  percentage?: number;
  count?: number;
  concurrent_task_count: number;
  concurrent_peer_count: number;
  /** Go time.Duration: nanoseconds. */
  timeout: number;
}

export interface TaskArgs {
  task_id: string;
  url: string;
  piece_length?: number;
  tag: string;
  application: string;
  filtered_query_params: string;
  content_for_calculating_task_id?: string;
  concurrent_peer_count: number;
  timeout: number;
}

function firstError(compiled: { Errors(v: unknown): Iterable<{ path: string; message: string }> }, value: unknown): never {
  for (const e of compiled.Errors(value)) {
    const field = ["body.args", ...e.path.split("/").filter(Boolean)].join(".");
    throw badRequest(field, e.message);
  }
  throw badRequest("body.args", "is invalid");
}

function timeoutNs(v: unknown): number {
  if (typeof v === "number") return v > 0 ? v : DEFAULT_JOB_TIMEOUT_NS;
  if (typeof v === "string" && v !== "") {
    try {
      return parseDuration(v) * 1e6;
    } catch {
      throw badRequest("body.args.timeout", `invalid duration "${v}"`);
    }
  }
  return DEFAULT_JOB_TIMEOUT_NS;
}

function parseUrl(u: string, field: string): URL {
  try {
    return new URL(u);
  } catch {
    throw badRequest(field, `invalid URL "${u}"`);
  }
}

function checkHttpUrl(u: string, field: string): void {
  const parsed = parseUrl(u, field);
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw badRequest(field, `unsupported URL scheme "${parsed.protocol}"`);
}

export function parsePreheatArgs(raw: unknown): PreheatArgs {
  const v = (raw ?? {}) as Static<typeof PreheatArgsSchema>;
  if (!compiledPreheat.Check(v)) firstError(compiledPreheat, v);
  const urls = (v.urls ?? []).filter((u) => u !== "");
  const url = v.url ?? "";
  const sources: SourceArgs = {};
  if (v.type === "image") {
    if (!url) throw badRequest("body.args.url", "is required for an image preheat");
    checkHttpUrl(url, "body.args.url");
    if (!MANIFEST_PATH.test(new URL(url).pathname)) throw badRequest("body.args.url", "must be a manifest URL: {scheme}://{registry}/v2/{repository}/manifests/{tag or digest}");
  } else {
    if (!url && urls.length === 0) throw badRequest("body.args.url", "url or urls is required");
    // Each URL by its scheme's rules (source-args.ts); the options of the schemes used are kept.
    const schemes = new Set<SourceScheme>();
    if (url) schemes.add(checkSourceUrl(parseUrl(url, "body.args.url"), "body.args.url").scheme);
    urls.forEach((u, i) => schemes.add(checkSourceUrl(parseUrl(u, `body.args.urls.${i}`), `body.args.urls.${i}`).scheme));
    const objectSchemes = new Set([...schemes].filter((x): x is ObjectStorageScheme => x !== "http" && x !== "hdfs" && !isModelHubScheme(x)));
    sources.object_storage = parseObjectStorageArgs(v.object_storage, objectSchemes);
    if (schemes.has("hdfs")) sources.hdfs = parseHdfsArgs(v.hdfs);
    if (schemes.has("hf")) sources.hugging_face = parseHubArgs(v.hugging_face, "hf");
    if (schemes.has("modelscope")) sources.model_scope = parseHubArgs(v.model_scope, "modelscope");
  }
  if (v.platform && !/^[a-z0-9]+\/[a-z0-9]+(\/[a-z0-9]+)?$/.test(v.platform)) throw badRequest("body.args.platform", `must look like os/arch[/variant], got "${v.platform}"`);
  (v.ips ?? []).forEach((ip, i) => {
    if (!isIP(ip)) throw badRequest(`body.args.ips.${i}`, `invalid IP address "${ip}"`);
  });
  const out: PreheatArgs = {
    type: v.type,
    url,
    urls,
    tag: v.tag ?? "",
    application: v.application ?? "",
    filtered_query_params: v.filtered_query_params || DEFAULT_FILTERED_QUERY_PARAMS.join("&"),
    headers: v.headers ?? {},
    username: v.username ?? "",
    password: v.password ?? "",
    platform: v.platform ?? "",
    scope: v.scope || "single_seed_peer",
    ips: v.ips ?? [],
    concurrent_task_count: v.concurrent_task_count || DEFAULT_CONCURRENT_TASK_COUNT,
    concurrent_peer_count: v.concurrent_peer_count || DEFAULT_CONCURRENT_PEER_COUNT,
    timeout: timeoutNs(v.timeout),
  };
  if (v.piece_length != null) out.piece_length = v.piece_length;
  if (v.percentage != null) out.percentage = v.percentage;
  if (v.count != null) out.count = v.count;
  for (const k of ["object_storage", "hdfs", "hugging_face", "model_scope"] as const) if (sources[k]) Object.assign(out, { [k]: sources[k] });
  return out;
}

export function parseTaskArgs(raw: unknown): TaskArgs {
  const v = (raw ?? {}) as Static<typeof TaskArgsSchema>;
  if (!compiledTask.Check(v)) firstError(compiledTask, v);
  if (!v.task_id && !v.url && v.content_for_calculating_task_id == null) throw badRequest("body.args.task_id", "task_id, url or content_for_calculating_task_id is required");
  if (v.url) checkHttpUrl(v.url, "body.args.url");
  const out: TaskArgs = {
    task_id: v.task_id ?? "",
    url: v.url ?? "",
    tag: v.tag ?? "",
    application: v.application ?? "",
    filtered_query_params: v.filtered_query_params || DEFAULT_FILTERED_QUERY_PARAMS.join("&"),
    concurrent_peer_count: v.concurrent_peer_count || DEFAULT_CONCURRENT_PEER_COUNT,
    timeout: timeoutNs(v.timeout),
  };
  if (v.piece_length != null) out.piece_length = v.piece_length;
  if (v.content_for_calculating_task_id != null) out.content_for_calculating_task_id = v.content_for_calculating_task_id;
  return out;
}

const SECRET_HEADER = /authorization|cookie|token|secret|password|api[-_]?key/i;

/** Args as the API shows them: passwords and credential headers are never returned. */
export function redactArgs(args: object): Record<string, unknown> {
  const out: Record<string, unknown> = { ...args };
  if (typeof out.password === "string" && out.password !== "") out.password = "[redacted]";
  if (out.headers && typeof out.headers === "object") {
    out.headers = Object.fromEntries(Object.entries(out.headers as Record<string, string>).map(([k, v]) => [k, SECRET_HEADER.test(k) ? "[redacted]" : v]));
  }
  if ("object_storage" in out) out.object_storage = redactObjectStorage(out.object_storage);
  redactSources(out);
  return out;
}

/** Args kept after a job finished: credentials are dropped from the database entirely. */
export function scrubArgs(args: object): Record<string, unknown> {
  const out = redactArgs(args);
  if ("password" in out) out.password = "";
  if (out.headers && typeof out.headers === "object") {
    out.headers = Object.fromEntries(Object.entries(out.headers as Record<string, string>).filter(([k]) => !SECRET_HEADER.test(k)));
  }
  return out;
}
