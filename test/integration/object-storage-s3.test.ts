// s3:// back-to-source against SeaweedFS's S3 gateway (issue 23), and oss://, obs://, cos://
// through the same S3-compatible API; the checks are in helpers/object-storage-suite.ts.
import { objectStorageSuite } from "../helpers/object-storage-suite.js";
import { S3_ACCESS_KEY, S3_SECRET_KEY, startSeaweedFs } from "../helpers/object-stores.js";

const BUCKET = "damselfly-s3";
const WRONG_SECRET = "not-the-secret-key-9f8e7d6c5b4a";

objectStorageSuite({
  scheme: "s3",
  bucket: BUCKET,
  start: (dir) => startSeaweedFs(dir, BUCKET),
  options: (endpoint) => ({ endpoint, region: "us-east-1", accessKeyId: S3_ACCESS_KEY, accessKeySecret: S3_SECRET_KEY }),
  flags: (endpoint) => ["--storage-endpoint", endpoint, "--storage-region", "us-east-1", "--storage-access-key-id", S3_ACCESS_KEY, "--storage-access-key-secret", S3_SECRET_KEY],
  compatible: ["oss", "obs", "cos"],
  wrongCredentials: (endpoint) => ({ flags: ["--storage-endpoint", endpoint, "--storage-access-key-id", S3_ACCESS_KEY, "--storage-access-key-secret", WRONG_SECRET], secret: WRONG_SECRET }),
});
