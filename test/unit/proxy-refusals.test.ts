// What the proxy answers for each failure and under which refusal reason it is counted; an
// upstream's own answer passed through is no refusal. The rate-limited log keeps one line per
// reason per interval and reports the lines it held back.
import { Writable } from "node:stream";
import { pino } from "pino";
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { SsrfError } from "../../src/common/ssrf.js";
import { BackendError } from "../../src/daemon/backend/types.js";
import { ProxyRequestError } from "../../src/daemon/proxy/headers.js";
import { proxyMetrics } from "../../src/daemon/proxy/metrics.js";
import { RateLimitedLog } from "../../src/daemon/proxy/rate-limited-log.js";
import { classifyFailure, REFUSAL_REASONS, reasonForStatus } from "../../src/daemon/proxy/refusals.js";
import { DownloadError } from "../../src/daemon/task/manager.js";

describe("refusal reasons", () => {
  it("maps the proxy's own 4xx by status", () => {
    expect([400, 403, 407, 429, 431, 405].map(reasonForStatus)).toEqual(["bad_request", "forbidden", "auth", "rate_limit", "header_too_large", "bad_request"]);
    expect(classifyFailure(new ProxyRequestError("x-dragonfly-priority: bad"))).toEqual({ status: 400, type: "proxy", message: "x-dragonfly-priority: bad", reason: "bad_request" });
    expect(classifyFailure(new ProxyRequestError("output path", 403)).reason).toBe("forbidden");
  });

  it("keeps the reason a ProxyRequestError names (plain-HTTP registry, unreachable registry)", () => {
    expect(classifyFailure(new ProxyRequestError("speaks plain HTTP", 502, "plain_http_registry"))).toMatchObject({ status: 502, reason: "plain_http_registry" });
    expect(classifyFailure(new ProxyRequestError("cannot reach", 502, "upstream_unreachable"))).toMatchObject({ status: 502, reason: "upstream_unreachable" });
  });

  it("finds SSRF refusals anywhere in the cause chain, before anything else", () => {
    const probe = new ProxyRequestError("cannot reach registry", 502, "upstream_unreachable", { cause: new SsrfError("169.254.169.254") });
    expect(classifyFailure(probe)).toMatchObject({ status: 403, type: "proxy", reason: "ssrf" });
    expect(classifyFailure(new DownloadError("x", "backend", new BackendError(`u: ${new SsrfError("127.0.0.1").message}`, undefined)))).toMatchObject({ status: 403, reason: "ssrf" });
  });

  it("passes an upstream's own error status through without a reason", () => {
    const challenge = 'Bearer realm="r"';
    const a = classifyFailure(new DownloadError("u: origin answered 401", "backend", new BackendError("u: origin answered 401", 401, { "www-authenticate": challenge, "x-other": "no" })));
    expect(a).toEqual({ status: 401, type: "backend", message: "upstream answered 401", headers: { "www-authenticate": challenge } });
    expect(classifyFailure(new DownloadError("404", "backend", new BackendError("404", 404))).reason).toBeUndefined();
  });

  it("tells an unreachable upstream from one that answered something unusable", () => {
    expect(classifyFailure(new DownloadError("u: connect ECONNREFUSED", "backend", new BackendError("u: connect ECONNREFUSED 127.0.0.1:1", undefined, {}, true)))).toMatchObject({ status: 502, type: "backend", reason: "upstream_unreachable" });
    expect(classifyFailure(new DownloadError("u: origin did not tell the content length", "backend")).reason).toBe("backend_error");
    // Direct forwarding: undici's errors.
    expect(classifyFailure(Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" }))).toMatchObject({ status: 502, reason: "upstream_unreachable" });
    expect(classifyFailure(Object.assign(new Error("SSL routines:ssl3_get_record:wrong version number"), { code: "ERR_SSL_WRONG_VERSION_NUMBER" })).reason).toBe("upstream_unreachable");
    expect(classifyFailure(new Error("something odd")).reason).toBe("backend_error");
  });

  it("blames the daemon for its own failures, the upstream for wrong bytes", () => {
    expect(classifyFailure(new DownloadError("scheduler down", "unavailable"))).toMatchObject({ status: 503, type: "dfdaemon", reason: "dfdaemon_error" });
    expect(classifyFailure(new DownloadError("gone", "not_found"))).toMatchObject({ status: 404, reason: "dfdaemon_error" });
    expect(classifyFailure(new DownloadError("3 of 4 pieces are missing", "internal"))).toMatchObject({ status: 502, reason: "dfdaemon_error" });
    expect(classifyFailure(new DownloadError("digest mismatch: expected sha256:a, got sha256:b", "invalid"))).toMatchObject({ status: 502, reason: "backend_error" });
  });

  it("exports every reason at 0 in dragonfly_client_proxy_request_refused_total", async () => {
    const registry = new Registry();
    const m = proxyMetrics(registry);
    m.requestRefusedTotal.inc({ reason: "bad_request" });
    const text = await registry.metrics();
    for (const r of REFUSAL_REASONS) expect(text).toContain(`dragonfly_client_proxy_request_refused_total{reason="${r}"} ${r === "bad_request" ? 1 : 0}`);
    // Dragonfly's other proxy counters are unlabelled (proxy_request_total is by scheme and method since 1.5).
    for (const name of ["failure", "via_dfdaemon", "rate_limited"]) expect(text).toMatch(new RegExp(`^dragonfly_client_proxy_request_${name}_total 0$`, "m"));
  });
});

describe("RateLimitedLog", () => {
  it("logs one line per key per interval and counts the lines held back", () => {
    const lines: Array<Record<string, unknown>> = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        cb();
      },
    });
    let now = 0;
    const log = new RateLimitedLog(pino({ level: "info" }, sink), 10_000, () => now);
    expect(log.warn("bad_request", { status: 400 }, "refused")).toBe(true);
    for (let i = 0; i < 1000; i++) log.warn("bad_request", { status: 400 }, "refused");
    // Another key has its own allowance.
    expect(log.warn("auth", { status: 407 }, "refused")).toBe(true);
    now += 9_999;
    expect(log.warn("bad_request", { status: 400 }, "refused")).toBe(false);
    now += 1;
    expect(log.warn("bad_request", { status: 400 }, "refused")).toBe(true);
    expect(lines.map((l) => [l.status, l.suppressed, l.msg, l.level])).toEqual([
      [400, undefined, "refused", 40],
      [407, undefined, "refused", 40],
      [400, 1001, "refused (1001 more like it since the last line)", 40],
    ]);
  });
});
