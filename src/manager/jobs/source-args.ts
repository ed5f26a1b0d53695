// The origins of a file preheat beyond http(s) (issue 23): object stores (object-storage-args.ts),
// HDFS and the model hubs, each URL a file or a directory. Their options travel as the download's
// do in Dragonfly's API, in the JSON form of common.v2.HDFS / HuggingFace / ModelScope:
//
//   hdfs:         { delegation_token }
//   hugging_face: { token, revision, base_url }   for hf:// URLs (revision "main" when unset)
//   model_scope:  { token, revision, base_url }   for modelscope:// URLs (revision "master")
//
// The revision is filled in here because it is part of the task id: dfget sends its default
// revision too, so a preheat and a later dfget of the same URL name the same task. The token and
// the delegation token are secrets: split off before the job row is written, like the object
// storage secrets, and joined back at dispatch (jobs/secrets.ts).
import { Type } from "@sinclair/typebox";
import { directoryUrlRules, endpointRule, type ObjectStorageScheme } from "../../common/object-storage.js";
import { DEFAULT_REVISION, parseHubUrl, type HubUrlWrong, type ModelHubScheme } from "../../common/model-hub.js";
import type { HDFS, HuggingFace, ModelScope } from "../../gen/common/v2/common.js";
import { badRequest } from "../errors.js";
import { checkObjectUrl, needsSecrets as needsObjectSecrets, objectScheme, REDACTED, splitSecrets, toObjectStorage, type ObjectStorageArgs, type ObjectStorageSecrets } from "./object-storage-args.js";
import type { ObjectStorage } from "../../gen/common/v2/common.js";

const Str = Type.Optional(Type.Union([Type.String({ maxLength: 8192 }), Type.Null()]));
export const HdfsArgsSchema = Type.Object({ delegation_token: Str });
export const HubArgsSchema = Type.Object({ token: Str, revision: Type.Optional(Type.Union([Type.String({ maxLength: 256 }), Type.Null()])), base_url: Str });

export interface HdfsArgs {
  delegation_token?: string;
}
export interface HubArgs {
  token?: string;
  revision: string;
  base_url?: string;
}

/** Where a file preheat's URL leads: the scheme's backend, and whether it names a directory. */
export type SourceScheme = "http" | ObjectStorageScheme | "hdfs" | ModelHubScheme;
export interface SourceUrl {
  scheme: SourceScheme;
  /** The URL names a directory (ends in "/", or a hub repository without a file path): its entries are listed and preheated. */
  directory: boolean;
}

/** Every secret of a preheat job, kept out of the database (secrets.ts). */
export interface PreheatSecrets extends ObjectStorageSecrets {
  hdfs_delegation_token?: string;
  hugging_face_token?: string;
  model_scope_token?: string;
}

const HUB_WRONG: Record<Exclude<HubUrlWrong, "not-hub">, (shown: string, arg: string) => string> = {
  credentials: (shown, arg) => `${shown}: credentials do not belong in the URL; pass the token in args.${arg}.token`,
  query: (shown, arg) => `${shown}: a model hub URL has no query; pass the revision in args.${arg}.revision`,
  "no-repo": (shown) => `${shown}: no repository: expected <scheme>://[models/|datasets/]<owner>/<repo>[/<path>]`,
  encoding: (shown) => `${shown}: the path is not valid percent-encoding`,
  segment: (shown) => `${shown}: the path has an empty, "." or ".." segment`,
};

const hubArg = (s: ModelHubScheme) => (s === "hf" ? "hugging_face" : "model_scope");

/**
 * Checks a file preheat's URL by its scheme's rules (those the seed peers' backends apply) and
 * says where it leads. file:// is refused by name: a manager must not make seed peers read
 * their local disks.
 */
export function checkSourceUrl(u: URL, field: string): SourceUrl {
  const shown = `${u.protocol}//${u.host}${u.pathname}`;
  if (u.protocol === "http:" || u.protocol === "https:") return { scheme: "http", directory: false };
  const object = objectScheme(u.href);
  if (object) {
    if (!u.pathname.endsWith("/")) {
      checkObjectUrl(u, field);
      return { scheme: object, directory: false };
    }
    const dir = directoryUrlRules(u);
    // The object's wording of the same rules (credentials, query, bucket) applies.
    if (!dir.ok) checkObjectUrl(u, field);
    return { scheme: object, directory: true };
  }
  if (u.protocol === "hdfs:") {
    if (u.username !== "" || u.password !== "") throw badRequest(field, `${shown}: credentials do not belong in the URL; pass a delegation token in args.hdfs.delegation_token`);
    if (u.hostname === "") throw badRequest(field, `${u.href}: no namenode: expected hdfs://<namenode>[:<port>]/<path>`);
    if (u.search !== "" || u.hash !== "") throw badRequest(field, `${shown}: an hdfs:// URL has no query or fragment`);
    if (u.pathname === "" || u.pathname === "/") throw badRequest(field, `${shown}: no path: expected hdfs://<namenode>[:<port>]/<path>`);
    return { scheme: "hdfs", directory: u.pathname.endsWith("/") };
  }
  const hub = parseHubUrl(u);
  if (hub.ok) return { scheme: hub.value.scheme, directory: hub.value.path === undefined || u.pathname.endsWith("/") };
  if (hub.wrong !== "not-hub") throw badRequest(field, HUB_WRONG[hub.wrong](shown, hubArg(u.protocol.replace(/:$/, "") as ModelHubScheme)));
  if (u.protocol === "file:") throw badRequest(field, "file:// URLs cannot be preheated: a manager must not make seed peers read their local disks");
  throw badRequest(field, `unsupported URL scheme "${u.protocol}": expected http, https, s3, gs, abs, oss, obs, cos, hdfs, hf or modelscope`);
}

type RawHdfs = { delegation_token?: string | null } | null | undefined;
type RawHub = { token?: string | null; revision?: string | null; base_url?: string | null } | null | undefined;

export function parseHdfsArgs(raw: RawHdfs): HdfsArgs | undefined {
  return raw?.delegation_token ? { delegation_token: raw.delegation_token } : undefined;
}

/** A hub's options for its URLs: the default revision filled in; base_url an http(s) URL without credentials. */
export function parseHubArgs(raw: RawHub, scheme: ModelHubScheme): HubArgs {
  const f = `body.args.${hubArg(scheme)}`;
  const out: HubArgs = { revision: raw?.revision || DEFAULT_REVISION[scheme] };
  if (/[\s?#]/.test(out.revision)) throw badRequest(`${f}.revision`, `invalid revision "${out.revision}"`);
  if (raw?.token) out.token = raw.token;
  if (raw?.base_url) {
    const e = endpointRule(raw.base_url);
    if (!e.ok) throw badRequest(`${f}.base_url`, e.wrong === "credentials" ? "carries credentials; pass the token in token" : `invalid base URL "${raw.base_url}": expected http(s)://host[:port]`);
    out.base_url = raw.base_url;
  }
  return out;
}

/** The options of one preheat that may hold secrets. */
export interface SourceArgs {
  object_storage?: ObjectStorageArgs;
  hdfs?: HdfsArgs;
  hugging_face?: HubArgs;
  model_scope?: HubArgs;
}

/** Splits every secret off the args: what may be stored ("[redacted]" in their place) and the secrets. */
export function splitPreheatSecrets<A extends SourceArgs>(args: A): { stored: A; secrets: PreheatSecrets } {
  const stored: A = { ...args };
  let secrets: PreheatSecrets = {};
  if (args.object_storage) {
    const split = splitSecrets(args.object_storage);
    stored.object_storage = split.stored;
    secrets = { ...split.secrets };
  }
  if (args.hdfs?.delegation_token !== undefined) {
    secrets.hdfs_delegation_token = args.hdfs.delegation_token;
    stored.hdfs = { delegation_token: REDACTED };
  }
  if (args.hugging_face?.token !== undefined) {
    secrets.hugging_face_token = args.hugging_face.token;
    stored.hugging_face = { ...args.hugging_face, token: REDACTED };
  }
  if (args.model_scope?.token !== undefined) {
    secrets.model_scope_token = args.model_scope.token;
    stored.model_scope = { ...args.model_scope, token: REDACTED };
  }
  return { stored, secrets };
}

/** Stored args whose secrets were split off and must be joined back before dispatch. */
export function needsPreheatSecrets(args: SourceArgs): boolean {
  return needsObjectSecrets(args.object_storage) || args.hdfs?.delegation_token === REDACTED || args.hugging_face?.token === REDACTED || args.model_scope?.token === REDACTED;
}

/** Which credentials of stored args were split off, for a message: "object storage", "HDFS", "Hugging Face", "ModelScope". */
export function heldCredentials(args: SourceArgs): string {
  const kinds = [needsObjectSecrets(args.object_storage) && "object storage", args.hdfs?.delegation_token === REDACTED && "HDFS", args.hugging_face?.token === REDACTED && "Hugging Face", args.model_scope?.token === REDACTED && "ModelScope"];
  return kinds.filter(Boolean).join(" and ");
}

/** The hdfs / hub options as the API shows them: any secret replaced (rows from before the split too). */
export function redactSources(out: Record<string, unknown>): void {
  for (const [k, secret] of [["hdfs", "delegation_token"], ["hugging_face", "token"], ["model_scope", "token"]] as const) {
    const v = out[k];
    if (v && typeof v === "object" && typeof (v as Record<string, unknown>)[secret] === "string" && (v as Record<string, unknown>)[secret] !== "") out[k] = { ...v, [secret]: REDACTED };
  }
}

/** What the scheduler gets for one URL: only its own scheme's options, secrets joined back. */
export interface SourceOptions {
  objectStorage?: ObjectStorage;
  hdfs?: HDFS;
  huggingFace?: HuggingFace;
  modelScope?: ModelScope;
}

export function sourceOptions(scheme: SourceScheme, args: SourceArgs, secrets: PreheatSecrets | undefined): SourceOptions {
  const held = (v: string | undefined, secret: string | undefined) => (v === REDACTED ? secret : v);
  const hub = (h: HubArgs | undefined, secret: string | undefined) => (h ? { revision: h.revision, token: held(h.token, secret), baseUrl: h.base_url } : undefined);
  switch (scheme) {
    case "http":
      return {};
    case "hdfs":
      return args.hdfs ? { hdfs: { delegationToken: held(args.hdfs.delegation_token, secrets?.hdfs_delegation_token) } } : {};
    case "hf":
      return { huggingFace: hub(args.hugging_face, secrets?.hugging_face_token) ?? { revision: DEFAULT_REVISION.hf } };
    case "modelscope":
      return { modelScope: hub(args.model_scope, secrets?.model_scope_token) ?? { revision: DEFAULT_REVISION.modelscope } };
    default:
      return { objectStorage: toObjectStorage(args.object_storage, secrets) };
  }
}
