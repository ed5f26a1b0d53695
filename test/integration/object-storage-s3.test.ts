// s3:// back-to-source against SeaweedFS's S3 gateway (issue 23), and oss://, obs://, cos://
// through the same S3-compatible API; the checks are in helpers/object-storage-suite.ts. The
// daemons read with a reader's access key created through SeaweedFS's IAM API.
import { seaweedAccess } from "../helpers/object-store-access.js";
import { objectStorageSuite } from "../helpers/object-storage-suite.js";

const WRONG_SECRET = "not-the-secret-key-9f8e7d6c5b4a";
const access = seaweedAccess("damselfly-s3");

objectStorageSuite({
  scheme: "s3",
  ...access,
  compatible: ["oss", "obs", "cos"],
  wrongCredentials: (endpoint) => ({ flags: ["--storage-endpoint", endpoint, "--storage-access-key-id", access.reader().accessKeyId, "--storage-access-key-secret", WRONG_SECRET], secret: WRONG_SECRET }),
});
