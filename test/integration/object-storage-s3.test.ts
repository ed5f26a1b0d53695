// s3:// back-to-source against SeaweedFS's S3 gateway (issue 23), and oss://, obs://, cos://
// through the same S3-compatible API; the checks are in helpers/object-storage-suite.ts. The
// daemons read with a reader's access key created through SeaweedFS's IAM API.
import { objectStorageSuite } from "../helpers/object-storage-suite.js";
import { startSeaweedFs, type SeaweedFs } from "../helpers/object-stores.js";

const BUCKET = "damselfly-s3";
const WRONG_SECRET = "not-the-secret-key-9f8e7d6c5b4a";
let store: SeaweedFs | undefined;

function reader(): SeaweedFs {
  if (!store) throw new Error("SeaweedFS is not running");
  return store;
}

objectStorageSuite({
  scheme: "s3",
  bucket: BUCKET,
  start: async (dir) => (store = await startSeaweedFs(dir, BUCKET)),
  options: (endpoint) => ({ endpoint, region: "us-east-1", accessKeyId: reader().accessKeyId, accessKeySecret: reader().secretAccessKey }),
  flags: (endpoint) => ["--storage-endpoint", endpoint, "--storage-region", "us-east-1", "--storage-access-key-id", reader().accessKeyId, "--storage-access-key-secret", reader().secretAccessKey],
  compatible: ["oss", "obs", "cos"],
  wrongCredentials: (endpoint) => ({ flags: ["--storage-endpoint", endpoint, "--storage-access-key-id", reader().accessKeyId, "--storage-access-key-secret", WRONG_SECRET], secret: WRONG_SECRET }),
});
