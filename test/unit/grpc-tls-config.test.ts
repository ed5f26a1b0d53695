// The TLS keys of Dragonfly's config files reach our components as file paths (all three or
// none, missing ones named), unreadable files fail at start naming the key, and the identity of
// a certificate is read from our SAN URI or, for an operator's own PKI, from the subject's OU.
import { X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../../src/common/config.js";
import { loadTls, tlsFilesOf } from "../../src/common/grpc/tls.js";
import { hostNamesOf, identityOf } from "../../src/common/tls/identity.js";
import { createClusterCa, issueLeaf } from "../../src/common/tls/pki.js";
import { DaemonConfigSchema, resolveDaemonConfig } from "../../src/daemon/config.js";
import { resolveManagerConfig } from "../../src/manager/config.js";
import { resolveSchedulerConfig } from "../../src/scheduler/config.js";

const files = { caCert: "/etc/dragonfly/ca.crt", cert: "/etc/dragonfly/tls.crt", key: "/etc/dragonfly/tls.key" };
const dir = mkdtempSync(join(tmpdir(), "tls-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("TLS config keys", () => {
  it("accepts Dragonfly's manager server.grpc.tls and scheduler server/manager/seedPeer tls sections", () => {
    expect(resolveManagerConfig({ server: { grpc: { tls: files } } }, "m.yaml", {}).server.grpc.tls).toEqual(files);
    expect(resolveManagerConfig({}, "m.yaml", {}).server.grpc.tls).toBeUndefined();
    const s = resolveSchedulerConfig({ server: { tls: files }, manager: { addr: "m:65003", tls: files }, seedPeer: { tls: files } });
    expect([s.server.tls, s.manager.tls, s.seedPeer.tls]).toEqual([files, files, files]);
    expect(() => resolveSchedulerConfig({ server: { tls: { caCert: "a", cert: "b" } } }, "s.yaml")).toThrow(/s\.yaml: server\.tls/);
  });

  it("accepts the client's flat caCert/cert/key beside manager, scheduler and upload.server, all three or none", () => {
    const yaml = `
manager: { addr: "m:65003", caCert: /ca.pem, cert: /m.pem, key: /m-key.pem }
scheduler: { addrs: ["s:8002"], caCert: /ca.pem, cert: /s.pem, key: /s-key.pem }
upload: { server: { port: 4000, caCert: /ca.pem, cert: /u.pem, key: /u-key.pem } }
`;
    const c = resolveDaemonConfig(parseConfig(DaemonConfigSchema, yaml, "dfdaemon.yaml"));
    expect(c.resolved.tls).toEqual({
      manager: { caCert: "/ca.pem", cert: "/m.pem", key: "/m-key.pem" },
      scheduler: { caCert: "/ca.pem", cert: "/s.pem", key: "/s-key.pem" },
      uploadServer: { caCert: "/ca.pem", cert: "/u.pem", key: "/u-key.pem" },
    });
    expect(resolveDaemonConfig(parseConfig(DaemonConfigSchema, "{}", "d")).resolved.tls).toEqual({ manager: undefined, scheduler: undefined, uploadServer: undefined });
    expect(() => resolveDaemonConfig(parseConfig(DaemonConfigSchema, "scheduler: { caCert: /ca.pem, cert: /s.pem }", "d"))).toThrow(
      new ConfigError("scheduler: TLS needs caCert, cert and key together; scheduler.key missing"),
    );
    expect(() => tlsFilesOf({ key: "/k" }, "upload.server")).toThrow(/upload\.server\.caCert, upload\.server\.cert missing/);
  });

  it("refuses storage.encryption without a manager reached over mTLS (keys never cross in plaintext)", () => {
    const enc = "storage: { encryption: { tenants: [default] } }";
    expect(() => resolveDaemonConfig(parseConfig(DaemonConfigSchema, enc, "d"))).toThrow(/storage\.encryption: .*manager\.addr is not set/);
    expect(() => resolveDaemonConfig(parseConfig(DaemonConfigSchema, `${enc}\nmanager: { addr: "m:65003" }`, "d"))).toThrow(/storage\.encryption: .*over mTLS only/);
    const ok = resolveDaemonConfig(parseConfig(DaemonConfigSchema, `${enc}\nmanager: { addr: "m:65003", caCert: /ca.pem, cert: /m.pem, key: /m-key.pem }`, "d"));
    expect(ok.storage.encryption).toEqual({ tenants: ["default"], applications: [] });
    expect(resolveDaemonConfig(parseConfig(DaemonConfigSchema, "{}", "d")).storage.encryption).toEqual({ tenants: [], applications: [] });
  });

  it("names the key of a certificate file that cannot be read", () => {
    expect(() => loadTls({ ...files, caCert: join(dir, "absent.pem") }, "server.tls")).toThrow(/^server\.tls\.caCert: cannot read .*absent\.pem/);
  });
});

describe("certificate identity", () => {
  it("issues leaves that chain to the cluster CA and name their role and holder", async () => {
    const ca = await createClusterCa();
    const leaf = await issueLeaf(ca, { role: "seed-peer", name: "seed-1", addresses: ["127.0.0.1", "seed.example"] });
    const x = new X509Certificate(leaf.cert);
    expect(x.checkIssued(new X509Certificate(ca.cert))).toBe(true);
    expect(x.verify(new X509Certificate(ca.cert).publicKey)).toBe(true);
    expect(x.subjectAltName).toBe("URI:damselfly://seed-peer/seed-1, IP Address:127.0.0.1, DNS:seed.example");
    expect(identityOf({ subject: { CN: "seed-1", OU: "seed-peer" }, subjectaltname: x.subjectAltName ?? "" })).toEqual({ role: "seed-peer", name: "seed-1" });
    await expect(issueLeaf(ca, { role: "admin" as never, name: "x" })).rejects.toThrow(/unknown role "admin"/);
  });

  it("reads the role from the subject's OU when the SAN has no URI of ours, and nothing from a certificate without either", () => {
    expect(identityOf({ subject: { CN: "sched-a", OU: "scheduler" }, subjectaltname: "DNS:sched-a.svc" })).toEqual({ role: "scheduler", name: "sched-a" });
    // The SAN URI wins over the subject.
    expect(identityOf({ subject: { CN: "x", OU: "scheduler" }, subjectaltname: "URI:damselfly://peer/p1" })).toEqual({ role: "peer", name: "p1" });
    expect(identityOf({ subject: { CN: "web", OU: "ops" }, subjectaltname: "DNS:web" })).toBeUndefined();
    expect(identityOf({ subject: { CN: "x" }, subjectaltname: "URI:damselfly://root/x" })).toBeUndefined();
    expect(identityOf(undefined)).toBeUndefined();
  });

  it("lists the host names a certificate carries: its name, CN and SAN DNS names, never its IPs or URIs", () => {
    const names = (subject: Record<string, string | string[]>, san: string) => [...hostNamesOf({ subject, subjectaltname: san })].sort();
    expect(names({ CN: "p1", OU: "peer" }, "URI:damselfly://peer/p1, IP Address:127.0.0.1, DNS:localhost")).toEqual(["localhost", "p1"]);
    // An operator's PKI: role from the OU, the host's FQDN in the SAN.
    expect(names({ CN: "node-7", OU: "peer" }, "DNS:node-7.example.com, DNS:node-7")).toEqual(["node-7", "node-7.example.com"]);
    expect(names({ CN: "x", OU: "peer" }, "URI:damselfly://peer/p2")).toEqual(["p2", "x"]);
    expect(names({}, "IP Address:10.0.0.1, URI:https://p3")).toEqual([]);
    expect(hostNamesOf(undefined).size).toBe(0);
  });
});
