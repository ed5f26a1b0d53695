// `damselfly init`: containerd's config_path and hosts.toml, registries.conf for CRI-O and
// Podman, Docker's daemon.json proxies; dry runs write nothing and print a diff.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseToml } from "smol-toml";
import { afterAll, describe, expect, it } from "vitest";
import { runInit, unifiedDiff } from "../../src/cli/commands/init.js";

const root = mkdtempSync(join(tmpdir(), "proxy-init-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const dir = () => {
  const d = join(root, String(n++));
  mkdirSync(d);
  return d;
};

describe("damselfly init containerd", () => {
  it("adds config_path under the CRI registry table, keeping comments, and writes hosts.toml files", async () => {
    const d = dir();
    const config = join(d, "config.toml");
    const original = `# ours\nversion = 2\n\n[plugins."io.containerd.grpc.v1.cri".registry]\n  # keep\n\n[metrics]\n  address = "127.0.0.1:1338"\n`;
    writeFileSync(config, original);
    const hosts = join(d, "certs.d");
    const dry = await runInit({ runtime: "containerd", configPath: config, hostsDir: hosts, registries: ["docker.io=https://registry-1.docker.io"], dryRun: true });
    expect(readFileSync(config, "utf8")).toBe(original);
    expect(existsSync(hosts)).toBe(false);
    expect(dry.changes.map((c) => c.path)).toEqual([config, join(hosts, "docker.io", "hosts.toml"), join(hosts, "_default", "hosts.toml")]);
    const diff = unifiedDiff(config, dry.changes[0]?.before, dry.changes[0]?.after ?? "");
    expect(diff).toContain(`+  config_path = "${hosts}"`);
    expect(diff).toContain("@@ -2,6 +2,7 @@");

    await runInit({ runtime: "containerd", configPath: config, hostsDir: hosts, registries: ["docker.io=https://registry-1.docker.io"] });
    const written = readFileSync(config, "utf8");
    expect(written).toContain("# keep");
    expect((parseToml(written) as { plugins: Record<string, { registry: { config_path: string } }> }).plugins["io.containerd.grpc.v1.cri"]?.registry.config_path).toBe(hosts);
    const docker = parseToml(readFileSync(join(hosts, "docker.io", "hosts.toml"), "utf8")) as { server: string; host: Record<string, { capabilities: string[]; header: Record<string, string> }> };
    expect(docker.server).toBe("https://registry-1.docker.io");
    expect(docker.host["http://127.0.0.1:4001"]?.capabilities).toEqual(["pull", "resolve"]);
    expect(docker.host["http://127.0.0.1:4001"]?.header["X-Dragonfly-Registry"]).toBe("https://registry-1.docker.io");
    const all = parseToml(readFileSync(join(hosts, "_default", "hosts.toml"), "utf8")) as { server?: string; host: Record<string, unknown> };
    expect(all.server).toBeUndefined();
    expect(Object.keys(all.host)).toEqual(["http://127.0.0.1:4001"]);

    // A second run changes nothing.
    expect((await runInit({ runtime: "containerd", configPath: config, hostsDir: hosts, registries: ["docker.io=https://registry-1.docker.io"] })).changes).toEqual([]);
  });

  it("uses an existing config_path, version 3's plugin, and creates a missing config", async () => {
    const d = dir();
    const config = join(d, "config.toml");
    writeFileSync(config, `version = 3\n[plugins."io.containerd.cri.v1.images".registry]\n  config_path = "${join(d, "mine")}:${join(d, "other")}"\n`);
    const r = await runInit({ runtime: "containerd", configPath: config, proxyAddr: "http://10.0.0.1:65001", proxyAllRegistries: true });
    expect(r.changes.map((c) => c.path)).toEqual([join(d, "mine", "_default", "hosts.toml")]);
    expect(readFileSync(join(d, "mine", "_default", "hosts.toml"), "utf8")).toContain('[host."http://10.0.0.1:65001"]');

    const fresh = join(d, "new", "config.toml");
    await runInit({ runtime: "containerd", configPath: fresh, hostsDir: join(d, "hosts"), proxyAllRegistries: false });
    expect(parseToml(readFileSync(fresh, "utf8"))).toEqual({ version: 2, plugins: { "io.containerd.grpc.v1.cri": { registry: { config_path: join(d, "hosts") } } } });
    expect(existsSync(join(d, "hosts", "_default"))).toBe(false);
  });

  it("refuses bad registries, proxy addresses, runtimes and broken config files", async () => {
    const d = dir();
    await expect(runInit({ runtime: "containerd", configPath: join(d, "c.toml"), registries: ["docker.io"], dryRun: true })).rejects.toThrow(/--registry: "docker.io"/);
    await expect(runInit({ runtime: "containerd", configPath: join(d, "c.toml"), registries: ["../etc=https://x"], dryRun: true })).rejects.toThrow(/--registry/);
    await expect(runInit({ runtime: "containerd", configPath: join(d, "c.toml"), registries: ["docker.io=docker.io"], dryRun: true })).rejects.toThrow(/http\(s\) URL/);
    await expect(runInit({ runtime: "containerd", proxyAddr: "127.0.0.1:4001", dryRun: true })).rejects.toThrow(/--proxy-addr/);
    await expect(runInit({ runtime: "rkt" as "docker", dryRun: true })).rejects.toThrow(/unknown container runtime "rkt"/);
    writeFileSync(join(d, "bad.toml"), "version = [");
    await expect(runInit({ runtime: "containerd", configPath: join(d, "bad.toml"), dryRun: true })).rejects.toThrow(/not valid TOML/);
    writeFileSync(join(d, "daemon.json"), "[1]");
    await expect(runInit({ runtime: "docker", configPath: join(d, "daemon.json"), dryRun: true })).rejects.toThrow(/not a JSON object/);
  });
});

describe("damselfly init crio|podman|docker", () => {
  it("writes registries.conf with the proxy as each registry's mirror", async () => {
    const d = dir();
    for (const runtime of ["crio", "podman"] as const) {
      const path = join(d, `${runtime}.conf`);
      await runInit({ runtime, configPath: path, registries: ["docker.io=docker.io", "quay.io=quay.io"] });
      const conf = parseToml(readFileSync(path, "utf8")) as { "unqualified-search-registries": string[]; registry: Array<{ prefix: string; location: string; mirror: Array<{ location: string; insecure: boolean }> }> };
      expect(conf["unqualified-search-registries"]).toContain("docker.io");
      expect(conf.registry.map((r) => [r.prefix, r.location, r.mirror[0]?.location, r.mirror[0]?.insecure])).toEqual([
        ["docker.io", "docker.io", "127.0.0.1:4001", true],
        ["quay.io", "quay.io", "127.0.0.1:4001", true],
      ]);
    }
  });

  it("sets Docker's proxies and keeps the rest of daemon.json", async () => {
    const d = dir();
    const path = join(d, "daemon.json");
    writeFileSync(path, JSON.stringify({ "log-driver": "journald", proxies: { "no-proxy": "localhost" } }));
    const r = await runInit({ runtime: "docker", configPath: path, proxyAddr: "http://127.0.0.1:65001", dryRun: true });
    expect(unifiedDiff(path, r.changes[0]?.before, r.changes[0]?.after ?? "")).toMatch(/^\+ {4}"https-proxy": "http:\/\/127\.0\.0\.1:65001"$/m);
    await runInit({ runtime: "docker", configPath: path, proxyAddr: "http://127.0.0.1:65001" });
    expect(JSON.parse(readFileSync(path, "utf8"))).toEqual({ "log-driver": "journald", proxies: { "no-proxy": "localhost", "http-proxy": "http://127.0.0.1:65001", "https-proxy": "http://127.0.0.1:65001" } });
  });
});
