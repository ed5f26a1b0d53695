// URLs reach the logs without query (signed S3-style URLs, tokens) and userinfo, whichever
// component logs them and whether they sit in a URL field or inside an error's text.
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../src/common/logger.js";
import { redactUrl, redactUrlsIn } from "../../src/common/redact-url.js";

const S3 =
  "https://bucket.s3.us-east-1.amazonaws.com/layers/blob.tar?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20261207%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261207T070000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=deadbeefcafe";
const SECRETS = ["AKIAEXAMPLE", "deadbeefcafe", "X-Amz", "hunter2", "alice", "t0ken"];

describe("redactUrl", () => {
  it.each([
    [S3, "https://bucket.s3.us-east-1.amazonaws.com/layers/blob.tar"],
    ["http://alice:hunter2@example.com/a/b?token=t0ken#frag", "http://example.com/a/b"],
    ["https://alice@example.com:8443/p", "https://example.com:8443/p"],
    ["/v2/app/manifests/v1?ns=127.0.0.1:5000", "/v2/app/manifests/v1"],
    ["registry.example.com:443", "registry.example.com:443"],
    ["alice:hunter2@registry.example.com:443", "registry.example.com:443"],
    ["http://alice:hunter2@[bad/x?y", "http://[bad/x"],
    ["http://[::1]:5000/v2/?x=1", "http://[::1]:5000/v2/"],
  ])("%s → %s", (raw, want) => {
    expect(redactUrl(raw)).toBe(want);
  });

  it("bounds the length", () => {
    expect(redactUrl(`/${"a".repeat(2000)}`).length).toBe(513);
    expect(redactUrl(undefined)).toBeUndefined();
  });

  it("redacts every URL inside an error text and keeps the rest", () => {
    expect(redactUrlsIn(`${S3}: origin answered 403`)).toBe("https://bucket.s3.us-east-1.amazonaws.com/layers/blob.tar: origin answered 403");
    expect(redactUrlsIn("redirected from http://alice:hunter2@a.example/x?token=t0ken, to https://b.example/y?sig=1.")).toBe("redirected from http://a.example/x, to https://b.example/y.");
    expect(redactUrlsIn("no URL here: host:443?x")).toBe("no URL here: host:443?x");
  });
});

describe("logger", () => {
  it("writes URL fields and error texts without query and userinfo, in every component", () => {
    for (const component of ["dfdaemon", "proxy", "scheduler", "manager"]) {
      const lines: string[] = [];
      const sink = new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) });
      const log = createLogger({ component }, sink);
      log.warn({ url: S3, upstream: "http://alice:hunter2@r.example/v2/?token=t0ken", err: `${S3}: origin answered 500` }, "download failed");
      log.error({ err: new Error(`GET http://alice:hunter2@r.example/x?token=t0ken failed`) }, "failed");
      log.child({ part: "jobs" }).info({ url: "https://r.example/v2/a/manifests/1?token=t0ken" }, "preheat");
      const out = lines.join("");
      for (const secret of SECRETS) expect(out, `${component}: ${secret}`).not.toContain(secret);
      expect(out).toContain('"url":"https://bucket.s3.us-east-1.amazonaws.com/layers/blob.tar"');
      expect(out).toContain('"upstream":"http://r.example/v2/"');
      expect(out).toContain("GET http://r.example/x failed");
      expect(out).toContain('"url":"https://r.example/v2/a/manifests/1"');
    }
  });
});
