// abs:// (Azure Blob) back-to-source against Azurite (issue 23); the checks are in
// helpers/object-storage-suite.ts.
import { objectStorageSuite } from "../helpers/object-storage-suite.js";
import { AZURITE_ACCOUNT, AZURITE_KEY, startAzurite } from "../helpers/object-stores.js";

const CONTAINER = "damselfly-abs";
// A well-formed account key (base64) that is not the account's.
const WRONG_KEY = Buffer.alloc(64, 7).toString("base64");

objectStorageSuite({
  scheme: "abs",
  bucket: CONTAINER,
  start: (dir) => startAzurite(dir, CONTAINER),
  options: (endpoint) => ({ endpoint, accessKeyId: AZURITE_ACCOUNT, accessKeySecret: AZURITE_KEY }),
  flags: (endpoint) => ["--storage-endpoint", endpoint, "--storage-access-key-id", AZURITE_ACCOUNT, "--storage-access-key-secret", AZURITE_KEY],
  wrongCredentials: (endpoint) => ({ flags: ["--storage-endpoint", endpoint, "--storage-access-key-id", AZURITE_ACCOUNT, "--storage-access-key-secret", WRONG_KEY], secret: WRONG_KEY }),
});
