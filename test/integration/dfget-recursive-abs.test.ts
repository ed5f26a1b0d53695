// dfget -r of an abs:// (Azure Blob) directory against Azurite (issue 23); the checks are in
// helpers/object-storage-directory-suite.ts.
import { azuriteAccess } from "../helpers/object-store-access.js";
import { directorySuite } from "../helpers/object-storage-directory-suite.js";

directorySuite({
  scheme: "abs",
  ...azuriteAccess("damselfly-dir-abs"),
  // Blob names are flat: `d/a` and `d/a/b` are two blobs.
  flatNamespace: true,
  // No escaping key: Azurite refuses a key with ".." segments (invalid characters), and lists
  // "trap/./dot.bin" back with its "." segment folded.
});
