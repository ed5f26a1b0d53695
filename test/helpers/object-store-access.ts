// How the object storage tests reach each real store: starting it, the download's options and
// dfget's flags for its reader's credentials. Shared by the back-to-source suite
// (object-storage-suite.ts) and the dfget -r suite (object-storage-directory-suite.ts).
import type { ObjectStorage } from "../../src/gen/common/v2/common.js";
import { AZURITE_ACCOUNT, AZURITE_KEY, startAzurite, startFakeGcs, startSeaweedFs, type RunningStore, type SeaweedFs } from "./object-stores.js";

export interface StoreAccess {
  bucket: string;
  start(dir: string): Promise<RunningStore>;
  /** The download's options for the running store. */
  options(endpoint: string): ObjectStorage;
  /** dfget's flags for `options`. */
  flags(endpoint: string): string[];
}

/** SeaweedFS's S3 gateway; the daemons read with a reader's access key created through its IAM API. */
export function seaweedAccess(bucket: string): StoreAccess & { reader(): SeaweedFs } {
  let store: SeaweedFs | undefined;
  const reader = () => {
    if (!store) throw new Error("SeaweedFS is not running");
    return store;
  };
  return {
    bucket,
    reader,
    start: async (dir) => (store = await startSeaweedFs(dir, bucket)),
    options: (endpoint) => ({ endpoint, region: "us-east-1", accessKeyId: reader().accessKeyId, accessKeySecret: reader().secretAccessKey }),
    flags: (endpoint) => ["--storage-endpoint", endpoint, "--storage-region", "us-east-1", "--storage-access-key-id", reader().accessKeyId, "--storage-access-key-secret", reader().secretAccessKey],
  };
}

/** Azurite with its well-known development account. */
export function azuriteAccess(container: string): StoreAccess {
  return {
    bucket: container,
    start: (dir) => startAzurite(dir, container),
    options: (endpoint) => ({ endpoint, accessKeyId: AZURITE_ACCOUNT, accessKeySecret: AZURITE_KEY }),
    flags: (endpoint) => ["--storage-endpoint", endpoint, "--storage-access-key-id", AZURITE_ACCOUNT, "--storage-access-key-secret", AZURITE_KEY],
  };
}

/** fake-gcs-server, which checks no credentials. */
export function fakeGcsAccess(bucket: string): StoreAccess {
  return { bucket, start: () => startFakeGcs(bucket), options: (endpoint) => ({ endpoint }), flags: (endpoint) => ["--storage-endpoint", endpoint] };
}
