// Object storage in preheat job args (issue 23): Dragonfly's PreheatArgs carry
// `object_storage` (common.v2.ObjectStorage in its JSON form: region, endpoint, access_key_id,
// access_key_secret, session_token, credential_path, predefined_acl, security_token,
// insecure_skip_verify) for `s3://`, `gs://`, `abs://`, `oss://`, `obs://` and `cos://` URLs.
// The secrets among them never reach the jobs table: the row keeps "[redacted]" in their
// place and the accepting manager holds the values in memory until the job is dispatched
// (jobs/secrets.ts).
import { Type } from "@sinclair/typebox";
import { endpointRule, isObjectStorageScheme, needsAccessKey, needsEndpoint, objectUrlRules, type ObjectStorageScheme, type ObjectUrlWrong } from "../../common/object-storage.js";
import type { ObjectStorage } from "../../gen/common/v2/common.js";
import { badRequest } from "../errors.js";

export const REDACTED = "[redacted]";

const Str = Type.Optional(Type.Union([Type.String({ maxLength: 8192 }), Type.Null()]));
export const ObjectStorageArgsSchema = Type.Object({
  region: Str,
  endpoint: Str,
  access_key_id: Str,
  access_key_secret: Str,
  session_token: Str,
  credential_path: Str,
  predefined_acl: Str,
  security_token: Str,
  insecure_skip_verify: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
});

/** The JSON form (snake_case, as Dragonfly's REST API takes it); empty strings are dropped. */
export interface ObjectStorageArgs {
  region?: string;
  endpoint?: string;
  access_key_id?: string;
  access_key_secret?: string;
  session_token?: string;
  predefined_acl?: string;
  security_token?: string;
  insecure_skip_verify?: boolean;
}

/** The fields that are secrets: never stored, never returned, never logged. */
export const SECRET_FIELDS = ["access_key_secret", "session_token", "security_token"] as const;
export type ObjectStorageSecrets = Partial<Record<(typeof SECRET_FIELDS)[number], string>>;

type RawObjectStorage = Partial<Record<keyof ObjectStorageArgs | "credential_path", string | boolean | null>>;

/** The object storage scheme of a URL, or undefined for anything else. */
export function objectScheme(url: string): ObjectStorageScheme | undefined {
  const scheme = url.slice(0, Math.max(0, url.indexOf(":"))).toLowerCase();
  return isObjectStorageScheme(scheme) ? scheme : undefined;
}

/** How a preheat words each broken rule of an object URL (the REST API's field names say where credentials go). */
const URL_WRONG: Record<ObjectUrlWrong, (shown: string, scheme: string) => string> = {
  credentials: (shown) => `${shown}: credentials do not belong in the URL; pass them in args.object_storage`,
  query: (shown) => `${shown}: an object storage URL has no query`,
  "no-bucket": (shown, scheme) => `${shown}: no bucket: expected ${scheme}//<bucket>/<key>`,
  "key-encoding": (shown) => `${shown}: the object key is not valid percent-encoding`,
  "no-key": (shown, scheme) => `${shown}: no object key: expected ${scheme}//<bucket>/<key>`,
  directory: (shown) => `${shown}: names a directory; a single object is expected`,
};

/** Checks an object storage URL against the rules the seed peers' daemons apply (common/object-storage.ts). */
export function checkObjectUrl(u: URL, field: string): void {
  const checked = objectUrlRules(u);
  if (!checked.ok) throw badRequest(field, URL_WRONG[checked.wrong](`${u.protocol}//${u.host}${u.pathname}`, u.protocol));
}

/**
 * Validates `object_storage` against the object storage schemes the URLs use (the fields each
 * store cannot work without, as the daemon checks them) and normalises it. `credential_path`
 * is refused: it names a file on the seed peers' hosts, and a manager must not make seed
 * peers read their local disks.
 */
export function parseObjectStorageArgs(raw: RawObjectStorage | null | undefined, schemes: ReadonlySet<ObjectStorageScheme>): ObjectStorageArgs | undefined {
  const f = "body.args.object_storage";
  if (raw?.credential_path) throw badRequest(`${f}.credential_path`, "is not accepted in a preheat: it names a file on the seed peers' hosts; configure the credential on the seed peers instead");
  const out: ObjectStorageArgs = {};
  for (const k of ["region", "endpoint", "access_key_id", "access_key_secret", "session_token", "predefined_acl", "security_token"] as const) {
    const v = raw?.[k];
    if (typeof v === "string" && v !== "") out[k] = v;
  }
  if (raw?.insecure_skip_verify === true) out.insecure_skip_verify = true;
  for (const scheme of schemes) {
    if (needsEndpoint(scheme) && !out.endpoint) throw badRequest(`${f}.endpoint`, `is required for ${scheme}:// URLs`);
    if (needsAccessKey(scheme) && (!out.access_key_id || !out.access_key_secret)) throw badRequest(`${f}.access_key_id`, `access_key_id and access_key_secret are required for ${scheme}:// URLs`);
  }
  if (out.access_key_id && !out.access_key_secret) throw badRequest(`${f}.access_key_secret`, "is required with access_key_id");
  const endpoint = out.endpoint ? endpointRule(out.endpoint) : undefined;
  if (endpoint && !endpoint.ok) {
    const expected = "expected http(s)://host[:port]";
    if (endpoint.wrong === "not-a-url") throw badRequest(`${f}.endpoint`, `invalid endpoint "${out.endpoint}": ${expected}`);
    if (endpoint.wrong === "not-http") throw badRequest(`${f}.endpoint`, `invalid endpoint scheme "${endpoint.parsed.protocol}": ${expected}`);
    throw badRequest(`${f}.endpoint`, "carries credentials; pass them as access_key_id and access_key_secret");
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/** Splits the secrets off: what may be stored (secrets replaced by "[redacted]") and the secrets. */
export function splitSecrets(os: ObjectStorageArgs): { stored: ObjectStorageArgs; secrets: ObjectStorageSecrets } {
  const stored: ObjectStorageArgs = { ...os };
  const secrets: ObjectStorageSecrets = {};
  for (const k of SECRET_FIELDS) {
    const v = os[k];
    if (v === undefined) continue;
    secrets[k] = v;
    stored[k] = REDACTED;
  }
  return { stored, secrets };
}

/** Stored args whose secrets were split off and must be joined back before dispatch. */
export function needsSecrets(os: ObjectStorageArgs | undefined): boolean {
  return os !== undefined && SECRET_FIELDS.some((k) => os[k] === REDACTED);
}

/** `object_storage` as the API shows it: any secret replaced (rows from before the split too). */
export function redactObjectStorage(os: unknown): unknown {
  if (!os || typeof os !== "object") return os;
  const out: Record<string, unknown> = { ...(os as Record<string, unknown>) };
  for (const k of SECRET_FIELDS) if (typeof out[k] === "string" && out[k] !== "") out[k] = REDACTED;
  return out;
}

/** The stored args joined with the held secrets, as common.v2.ObjectStorage for the scheduler. */
export function toObjectStorage(os: ObjectStorageArgs | undefined, secrets: ObjectStorageSecrets | undefined): ObjectStorage | undefined {
  if (!os) return undefined;
  const secret = (k: (typeof SECRET_FIELDS)[number]) => (os[k] === REDACTED ? secrets?.[k] : os[k]);
  return {
    region: os.region,
    endpoint: os.endpoint,
    accessKeyId: os.access_key_id,
    accessKeySecret: secret("access_key_secret"),
    sessionToken: secret("session_token"),
    predefinedAcl: os.predefined_acl,
    securityToken: secret("security_token"),
    insecureSkipVerify: os.insecure_skip_verify,
  };
}
