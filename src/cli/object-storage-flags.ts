// dfget's object storage flags (issue 23), named as Dragonfly's dfget names them, filling the
// download's ObjectStorage for s3://, gs://, abs://, oss://, obs:// and cos:// URLs only (as
// Dragonfly's dfget does): other URLs never carry the credentials to the daemon.
import { Option, type Command } from "commander";
import { isObjectStorageScheme } from "../common/object-storage.js";
import type { ObjectStorage } from "../gen/common/v2/common.js";

export interface ObjectStorageFlags {
  storageRegion?: string;
  storageEndpoint?: string;
  storageAccessKeyId?: string;
  storageAccessKeySecret?: string;
  storageSecurityToken?: string;
  storageSessionToken?: string;
  storageCredentialPath?: string;
  storagePredefinedAcl?: string;
  storageInsecureSkipVerify?: boolean;
}

export function addObjectStorageOptions(program: Command): Command {
  return program
    .option("--storage-region <region>", "region of the object storage service (e.g. us-east-1)")
    .option("--storage-endpoint <url>", "endpoint of the object storage service (e.g. https://s3.amazonaws.com); abs, oss, obs and cos need one")
    .option("--storage-access-key-id <id>", "access key id of the object storage service (abs: the account name)")
    .option("--storage-access-key-secret <secret>", "access key secret of the object storage service (abs: the account key)")
    .option("--storage-security-token <token>", "security token of the object storage service (OSS STS)")
    .option("--storage-session-token <token>", "session token for Amazon S3")
    .option("--storage-credential-path <path>", "credential file on the daemon's host for Google Cloud Storage (OAuth2)")
    .option("--storage-predefined-acl <acl>", "predefined ACL for Google Cloud Storage")
    .addOption(new Option("--storage-insecure-skip-verify [bool]", "do not verify the object storage service's TLS certificate").argParser((v) => {
      if (v === "true") return true;
      if (v === "false") return false;
      throw new Error(`invalid --storage-insecure-skip-verify "${v}": expected true or false`);
    }));
}

/** The download's ObjectStorage from the flags, or undefined for a URL that is not an object store's. */
export function objectStorageOf(url: string, f: ObjectStorageFlags): ObjectStorage | undefined {
  if (!isObjectStorageScheme(new URL(url).protocol.replace(/:$/, ""))) return undefined;
  return {
    region: f.storageRegion,
    endpoint: f.storageEndpoint,
    accessKeyId: f.storageAccessKeyId,
    accessKeySecret: f.storageAccessKeySecret,
    sessionToken: f.storageSessionToken,
    credentialPath: f.storageCredentialPath,
    predefinedAcl: f.storagePredefinedAcl,
    securityToken: f.storageSecurityToken,
    // A bare --storage-insecure-skip-verify means true.
    insecureSkipVerify: f.storageInsecureSkipVerify === undefined ? undefined : f.storageInsecureSkipVerify !== false,
  };
}
