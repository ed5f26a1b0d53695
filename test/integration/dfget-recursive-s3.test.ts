// dfget -r of an s3:// directory against SeaweedFS's S3 gateway (issue 23); the checks are in
// helpers/object-storage-directory-suite.ts.
import { seaweedAccess } from "../helpers/object-store-access.js";
import { directorySuite } from "../helpers/object-storage-directory-suite.js";

directorySuite({
  scheme: "s3",
  ...seaweedAccess("damselfly-dir-s3"),
  // SeaweedFS keeps objects in a filer's directory tree: `d/a` and `d/a/b` cannot both exist.
  flatNamespace: false,
  // No escaping key: SeaweedFS refuses a key with ".." segments (InvalidRequest), and lists
  // "trap//abs.bin" back with its empty segment folded.
});
