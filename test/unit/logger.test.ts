import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../src/common/logger.js";

describe("logger", () => {
  it("never writes credentials, wherever they sit", () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) });
    const log = createLogger({ component: "test" }, sink);
    log.info({ headers: { authorization: "Bearer abc", Authorization: "Basic xyz" }, req: { headers: { authorization: "Bearer def" } }, password: "hunter2", job: { args: { token: "t0k" } } }, "request");
    const out = lines.join("");
    for (const secret of ["abc", "xyz", "def", "hunter2", "t0k"]) expect(out).not.toContain(secret);
    expect(out).toContain("[redacted]");
    expect(out).toContain('"component":"test"');
  });

  it("never writes a download's object storage secrets", () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) });
    const log = createLogger({ component: "test" }, sink);
    log.info({ download: { objectStorage: { accessKeyId: "AKID", accessKeySecret: "s3cr3t-key", sessionToken: "sess-tok", securityToken: "sts-tok" } } }, "download");
    const out = lines.join("");
    for (const secret of ["s3cr3t-key", "sess-tok", "sts-tok"]) expect(out).not.toContain(secret);
  });

  it("never writes an HDFS delegation token or a hub token (a download's or a preheat job's args)", () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) });
    const log = createLogger({ component: "test" }, sink);
    log.info({ download: { hdfs: { delegationToken: "dt-1" }, huggingFace: { token: "hf-2", revision: "main" } } }, "download");
    log.info({ args: { hdfs: { delegation_token: "dt-3" }, model_scope: { token: "ms-4" } } }, "job");
    const out = lines.join("");
    for (const secret of ["dt-1", "hf-2", "dt-3", "ms-4"]) expect(out).not.toContain(secret);
    expect(out).toContain('"revision":"main"');
  });
});
