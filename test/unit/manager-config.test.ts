import { Command } from "commander";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { register, startManagerCommand } from "../../src/cli/commands/manager.js";
import { ConfigError } from "../../src/common/config.js";
import { loadManagerConfig, parseAddr, resolveManagerConfig } from "../../src/manager/config.js";

const dir = mkdtempSync(join(tmpdir(), "manager-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};

describe("manager config", () => {
  it("has Dragonfly's defaults and ports", () => {
    const c = resolveManagerConfig({}, "t", {});
    expect(c.server.rest.addr).toBe(":8080");
    expect(c.resolved.rest).toEqual({ host: "0.0.0.0", port: 8080 });
    expect(c.server.grpc.port).toEqual({ start: 65003, end: 65003 });
    expect(c.resolved.metrics.port).toBe(8000);
    expect(c.auth.jwt.realm).toBe("Dragonfly");
    expect(c.auth.signUp).toBe(false);
    expect(c.server.rest.cors.allowOrigins).toEqual([]);
    expect(c.resolved.databaseUrl).toBeUndefined();
    expect(c.resolved.jwt.timeoutMs).toBe(48 * 3_600_000);
  });
  it("uses database.url, then DATABASE_URL, then database.postgres.*", () => {
    expect(resolveManagerConfig({ database: { url: "postgres://a@h/db" } }, "t", { DATABASE_URL: "postgres://b@h/db" }).resolved.databaseUrl).toBe("postgres://a@h/db");
    expect(resolveManagerConfig({}, "t", { DATABASE_URL: "postgres://b@h/db" }).resolved.databaseUrl).toBe("postgres://b@h/db");
    const url = resolveManagerConfig({ database: { postgres: { host: "db.internal", user: "dragonfly", password: "p@ss", dbname: "manager", sslMode: "require" } } }, "t", {}).resolved.databaseUrl;
    expect(url).toBe("postgres://dragonfly:p%40ss@db.internal:5432/manager?sslmode=require&options=-c%20TimeZone%3DUTC");
  });
  it("takes the tenant-key encryption key from encryption.key, then DAMSELFLY_MANAGER_ENCRYPTION_KEY, and names a bad one", () => {
    const a = Buffer.alloc(32, 1).toString("base64");
    const b = Buffer.alloc(32, 2).toString("base64");
    expect(resolveManagerConfig({}, "t", {}).resolved.encryptionKey).toBeUndefined();
    expect(resolveManagerConfig({ encryption: { key: a } }, "t", { DAMSELFLY_MANAGER_ENCRYPTION_KEY: b }).resolved.encryptionKey).toEqual(Buffer.alloc(32, 1));
    expect(resolveManagerConfig({}, "t", { DAMSELFLY_MANAGER_ENCRYPTION_KEY: b }).resolved.encryptionKey).toEqual(Buffer.alloc(32, 2));
    const short = Buffer.alloc(16, 1).toString("base64");
    expect(() => resolveManagerConfig({ encryption: { key: short } }, "m.yaml", {})).toThrow(new ConfigError("m.yaml: encryption.key: must be 32 bytes in base64 (44 characters, e.g. from `openssl rand -base64 32`), got 24 characters"));
    expect(() => resolveManagerConfig({}, "m.yaml", { DAMSELFLY_MANAGER_ENCRYPTION_KEY: `${a.slice(0, 40)}!!!=` })).toThrow(/^DAMSELFLY_MANAGER_ENCRYPTION_KEY: must be 32 bytes in base64/);
  });
  it("names bad keys and values", () => {
    expect(() => resolveManagerConfig({ server: { rest: { adr: ":1" } } }, "m.yaml", {})).toThrow(new ConfigError("m.yaml: server.rest.adr: unknown key"));
    expect(() => resolveManagerConfig({ server: { rest: { addr: "nope" } } }, "m.yaml", {})).toThrow(/server\.rest\.addr/);
    expect(() => resolveManagerConfig({ database: { type: "mysql" } }, "m.yaml", {})).toThrow(/database\.type: only "postgres"/);
    expect(() => resolveManagerConfig({ auth: { jwt: { timeout: "forever" } } }, "m.yaml", {})).toThrow(/auth\.jwt\.timeout/);
    expect(() => resolveManagerConfig({ server: { grpc: { port: { start: 65004, end: 65003 } } } }, "m.yaml", {})).toThrow(/server\.grpc\.port\.end/);
    expect(() => resolveManagerConfig({ database: { url: "mysql://x" } }, "m.yaml", {})).toThrow(/database\.url/);
    expect(() => resolveManagerConfig({ job: { preheat: { ssrf: { allowCIDRs: ["everything"] } } } }, "m.yaml", {})).toThrow(/allowCIDRs\.0/);
    expect(() => resolveManagerConfig({ webhook: { ssrf: { allowCIDRs: ["127.0.0.1", "loopback"] } } }, "m.yaml", {})).toThrow(/webhook\.ssrf\.allowCIDRs\.1: "loopback" is not a CIDR/);
    expect(() => resolveManagerConfig({ webhook: { backoff: "soon" } }, "m.yaml", {})).toThrow(/webhook\.backoff/);
    expect(() => resolveManagerConfig({ webhook: { maxAttempts: 0 } }, "m.yaml", {})).toThrow(/webhook\.maxAttempts/);
  });
  it("resolves the webhook delivery settings", () => {
    expect(resolveManagerConfig({}, "t", {}).resolved.webhook).toEqual({ backoffMs: 30_000, maxBackoffMs: 3_600_000, timeoutMs: 10_000 });
    expect(resolveManagerConfig({}, "t", {}).webhook.maxAttempts).toBe(8);
    expect(resolveManagerConfig({ webhook: { backoff: "250ms", timeout: "2s" } }, "t", {}).resolved.webhook).toMatchObject({ backoffMs: 250, timeoutMs: 2000 });
  });
  it("parses listen addresses", () => {
    expect(parseAddr("127.0.0.1:0", "k", false)).toEqual({ host: "127.0.0.1", port: 0 });
    expect(parseAddr("[::1]:8080", "k", false)).toEqual({ host: "::1", port: 8080 });
    expect(parseAddr(":8080", "k", true)).toEqual({ host: "::", port: 8080 });
    expect(() => parseAddr("8080", "k", false)).toThrow(/host:port/);
  });
  it("loads YAML and the CLI reports the failing key", async () => {
    const good = file("good.yaml", "server:\n  rest:\n    addr: 127.0.0.1:9090\nmetrics:\n  enable: false\n");
    expect(loadManagerConfig(good, {}).resolved.rest.port).toBe(9090);
    const bad = file("bad.yaml", "auth:\n  jwt:\n    tiemout: 1h\n");
    await expect(startManagerCommand({ config: bad })).rejects.toThrow(/auth\.jwt\.tiemout: unknown key/);
    await expect(startManagerCommand({ config: good, dataDir: "" })).rejects.toThrow(/--data-dir/);
    const program = new Command().exitOverride();
    register(program);
    const cmd = program.commands.find((c) => c.name() === "manager");
    expect(cmd?.options.map((o) => o.long)).toEqual(["--config", "--data-dir"]);
  });
});
