// gs:// back-to-source against fake-gcs-server (issue 23); the checks are in
// helpers/object-storage-suite.ts. fake-gcs-server checks no credentials, so "refused
// credentials" here is a credential file that cannot be used: named, its content never shown.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fakeGcsAccess } from "../helpers/object-store-access.js";
import { objectStorageSuite } from "../helpers/object-storage-suite.js";
import { tempDir } from "../helpers/swarm.js";

const SECRET = "private-key-material-5a4b3c2d1e";

objectStorageSuite({
  scheme: "gs",
  ...fakeGcsAccess("damselfly-gs"),
  wrongCredentials: (endpoint) => {
    const file = join(tempDir("gcs-cred"), "key.json");
    writeFileSync(file, `{"private_key": "${SECRET}"`);
    return { flags: ["--storage-endpoint", endpoint, "--storage-credential-path", file], secret: undefined, error: new RegExp(`credential file ${file} is not JSON`) };
  },
});
