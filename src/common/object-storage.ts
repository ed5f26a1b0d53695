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
