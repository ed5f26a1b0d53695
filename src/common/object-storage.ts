// The object storage URL schemes (issue 23) and which of them need an endpoint, shared by the
// daemon's back-to-source backends, dfget's flags and the manager's preheat job validation.
// Which fields each store needs follows Dragonfly's client (dragonfly-client-backend
// object_storage): abs, oss, obs and cos have no default endpoint; s3 and gs do.

export const OBJECT_STORAGE_SCHEMES = ["s3", "gs", "abs", "oss", "obs", "cos"] as const;
export type ObjectStorageScheme = (typeof OBJECT_STORAGE_SCHEMES)[number];

export function isObjectStorageScheme(scheme: string): scheme is ObjectStorageScheme {
  return (OBJECT_STORAGE_SCHEMES as readonly string[]).includes(scheme);
}

/** Stores with no well-known endpoint: the request must name one. */
export function needsEndpoint(scheme: ObjectStorageScheme): boolean {
  return scheme !== "s3" && scheme !== "gs";
}

/** Stores that refuse anonymous reads: an access key id and secret (Azure: account name and key) are required. */
export function needsAccessKey(scheme: ObjectStorageScheme): boolean {
  return scheme === "abs" || scheme === "oss" || scheme === "obs" || scheme === "cos";
}

// The rules an object storage URL and a store's endpoint must meet, checked by the daemon
// before it goes back to source and by the manager before it accepts a preheat: one function
// per rule, each returning what is wrong (or what it parsed), so that both sides refuse the
// same URLs while each words the refusal its own way (dfget's flags vs the REST API's field
// names) with its own error class.

/** A rule's outcome: what it parsed, or which way the input breaks it. */
export type Checked<T, W extends string> = { ok: true; value: T } | { ok: false; wrong: W };

const pass = <T>(value: T): { ok: true; value: T } => ({ ok: true, value });
const fail = <W extends string>(wrong: W): { ok: false; wrong: W } => ({ ok: false, wrong });

/** Credentials in the URL would be logged, reported to the scheduler and part of the task id. */
export function urlCredentialsRule(u: URL): Checked<void, "credentials"> {
  return u.username !== "" || u.password !== "" ? fail("credentials") : pass(undefined);
}

/** Dragonfly's object URLs have no query (a version or a signature is not addressed that way). */
export function urlQueryRule(u: URL): Checked<void, "query"> {
  return u.search !== "" ? fail("query") : pass(undefined);
}

/** The bucket (Azure Blob: the container) is the URL's host. */
export function bucketRule(u: URL): Checked<string, "no-bucket"> {
  return u.hostname === "" ? fail("no-bucket") : pass(u.hostname);
}

/** The URL's path without its leading slash, percent-decoded; undefined when it is not valid percent-encoding. */
function decodedPath(u: URL): string | undefined {
  try {
    return decodeURIComponent(u.pathname.replace(/^\//, ""));
  } catch {
    return undefined;
  }
}

/**
 * The object key is the URL's path without its leading slash, percent-decoded: `a%2F` is the key
 * `a/`, so it names a directory exactly as `a/` does, whoever checks it.
 */
export function objectKeyRule(u: URL): Checked<string, "key-encoding" | "no-key" | "directory"> {
  const key = decodedPath(u);
  if (key === undefined) return fail("key-encoding");
  if (key === "") return fail("no-key");
  if (key.endsWith("/")) return fail("directory");
  return pass(key);
}

/**
 * A directory's key prefix: the URL's path without its leading slash, percent-decoded, empty (the
 * whole bucket) or ending in a slash; every object whose key starts with it is in the directory.
 */
export function directoryPrefixRule(u: URL): Checked<string, "key-encoding" | "not-directory"> {
  const prefix = decodedPath(u);
  if (prefix === undefined) return fail("key-encoding");
  if (prefix !== "" && !prefix.endsWith("/")) return fail("not-directory");
  return pass(prefix);
}

export type ObjectUrlWrong = "credentials" | "query" | "no-bucket" | "key-encoding" | "no-key" | "directory";
export type DirectoryUrlWrong = "credentials" | "query" | "no-bucket" | "key-encoding" | "not-directory";

/**
 * The rules every object storage URL meets, an object's or a directory's (no credentials, no
 * query, a bucket), then `rule` for its path, whose value is returned under `name`.
 */
function withBucket<K extends string, W extends string>(u: URL, name: K, rule: (u: URL) => Checked<string, W>): Checked<{ bucket: string } & Record<K, string>, "credentials" | "query" | "no-bucket" | W> {
  for (const r of [urlCredentialsRule(u), urlQueryRule(u)]) if (!r.ok) return r;
  const bucket = bucketRule(u);
  if (!bucket.ok) return bucket;
  const path = rule(u);
  if (!path.ok) return path;
  return pass({ bucket: bucket.value, [name]: path.value } as { bucket: string } & Record<K, string>);
}

/** Every rule of an object URL, in the order a refusal names the first one broken. */
export function objectUrlRules(u: URL): Checked<{ bucket: string; key: string }, ObjectUrlWrong> {
  return withBucket(u, "key", objectKeyRule);
}

/** Every rule of a directory URL (dfget --recursive), in the order a refusal names the first one broken. */
export function directoryUrlRules(u: URL): Checked<{ bucket: string; prefix: string }, DirectoryUrlWrong> {
  return withBucket(u, "prefix", directoryPrefixRule);
}

export type EndpointWrong = "not-a-url" | "not-http" | "credentials";

/** The endpoint rule's outcome; a refusal of a URL that parsed carries it, to be shown without what follows its host. */
export type CheckedEndpoint = { ok: true; value: URL } | { ok: false; wrong: "not-a-url" } | { ok: false; wrong: "not-http" | "credentials"; parsed: URL };

/** A store's endpoint is an http(s) URL without credentials (those go in the access key fields, which are kept out of logs). */
export function endpointRule(endpoint: string): CheckedEndpoint {
  let e: URL;
  try {
    e = new URL(endpoint);
  } catch {
    return fail("not-a-url");
  }
  if (e.protocol !== "http:" && e.protocol !== "https:") return { ok: false, wrong: "not-http", parsed: e };
  if (e.username !== "" || e.password !== "") return { ok: false, wrong: "credentials", parsed: e };
  return pass(e);
}
