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
});
