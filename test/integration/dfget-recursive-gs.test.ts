// dfget -r of a gs:// directory against fake-gcs-server (issue 23); the checks are in
// helpers/object-storage-directory-suite.ts. fake-gcs-server keeps a key with ".." segments as
// it is (so may GCS and AWS S3): the one a listing must never write outside the output directory.
import { fakeGcsAccess } from "../helpers/object-store-access.js";
import { directorySuite } from "../helpers/object-storage-directory-suite.js";

directorySuite({
  scheme: "gs",
  ...fakeGcsAccess("damselfly-dir-gs"),
  flatNamespace: true,
  escapingKey: "trap/../../escape.bin",
});
