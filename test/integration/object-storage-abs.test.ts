// abs:// (Azure Blob) back-to-source against Azurite (issue 23); the checks are in
// helpers/object-storage-suite.ts.
import { AZURITE_ACCOUNT } from "../helpers/object-stores.js";
import { azuriteAccess } from "../helpers/object-store-access.js";
import { objectStorageSuite } from "../helpers/object-storage-suite.js";

// A well-formed account key (base64) that is not the account's.
const WRONG_KEY = Buffer.alloc(64, 7).toString("base64");

objectStorageSuite({
  scheme: "abs",
  ...azuriteAccess("damselfly-abs"),
  wrongCredentials: (endpoint) => ({ flags: ["--storage-endpoint", endpoint, "--storage-access-key-id", AZURITE_ACCOUNT, "--storage-access-key-secret", WRONG_KEY], secret: WRONG_KEY }),
});
