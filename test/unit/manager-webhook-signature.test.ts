// The webhook signing scheme (signature.ts): HMAC-SHA256 over "<timestamp>.<raw body>", checked
// against a value computed independently with `openssl dgst -sha256 -hmac`; and the retry
// backoff's bounds (exponential, capped, jitter within the upper half).
import { describe, expect, it } from "vitest";
import { signPayload, verifySignature } from "../../src/manager/webhooks/signature.js";
import { retryDelay } from "../../src/manager/webhooks/dispatcher.js";

const SECRET = "whsec-test-secret";
const BODY = '{"event":"job.created"}';
// printf '%s' '1700000000.{"event":"job.created"}' | openssl dgst -sha256 -hmac 'whsec-test-secret'
const OPENSSL = "sha256=aef65dbc949fa4783b3d7246dfb52e1db7fce2ab84747b3b8f842f99f6ff1ab9";

describe("webhook signature", () => {
  it("is HMAC-SHA256 of timestamp.body, hex, prefixed with sha256=", () => {
    expect(signPayload(SECRET, 1_700_000_000, BODY)).toBe(OPENSSL);
  });

  it("verifies only the same secret, timestamp and body", () => {
    expect(verifySignature(SECRET, 1_700_000_000, BODY, OPENSSL)).toBe(true);
    expect(verifySignature("another-secret", 1_700_000_000, BODY, OPENSSL)).toBe(false);
    expect(verifySignature(SECRET, 1_700_000_001, BODY, OPENSSL)).toBe(false);
    expect(verifySignature(SECRET, 1_700_000_000, '{"event":"job.failed"}', OPENSSL)).toBe(false);
    expect(verifySignature(SECRET, 1_700_000_000, BODY, OPENSSL.slice(0, -1))).toBe(false);
    expect(verifySignature(SECRET, 1_700_000_000, BODY, "")).toBe(false);
  });
});

describe("webhook retry delay", () => {
  it("doubles from the base, stays within the upper half of its ceiling, and is capped", () => {
    expect(retryDelay(1, 1000, 60_000, () => 0)).toBe(500);
    expect(retryDelay(1, 1000, 60_000, () => 1)).toBe(1000);
    expect(retryDelay(2, 1000, 60_000, () => 1)).toBe(2000);
    expect(retryDelay(4, 1000, 60_000, () => 0.5)).toBe(6000);
    expect(retryDelay(20, 1000, 60_000, () => 1)).toBe(60_000);
    expect(retryDelay(20, 1000, 60_000, () => 0)).toBe(30_000);
  });
});
