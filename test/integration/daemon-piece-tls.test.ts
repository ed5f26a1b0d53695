// Vortex over TCP under mutual TLS between daemons (storage.server.tls, issue 21): pieces move
// between peers of one cluster CA over TLS; a peer without a certificate gets no piece from a
// TLS-only parent (and fetches from the origin instead); allowPlaintext serves it, as a mixed
// swarm with Dragonfly's plaintext children needs.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { TlsFiles } from "../../src/common/grpc/tls.js";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { stackCertificates } from "../../src/up/pki.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, sha256File, startTestDaemon, startTestScheduler, tempDir } from "../helpers/swarm.js";

const MiB = 1024 * 1024;
const work = mkdtempSync(join(tmpdir(), "piece-tls-"));
let certs: Map<string, TlsFiles>;
const running: Array<{ close(): Promise<void> }> = [];

beforeAll(async () => {
  certs = await stackCertificates(join(work, "pki"), [
    { name: "seed-1", role: "seed-peer" },
    { name: "peer-1", role: "peer" },
  ]);
});

afterEach(async () => {
  for (const r of running.splice(0).reverse()) await r.close().catch(() => undefined);
  cleanupTempDirs();
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A daemon whose piece server and piece client run mutual TLS with `name`'s certificate. */
async function daemon(name: string, schedulerPort: number, o: { tls?: TlsFiles; allowPlaintext?: boolean; seed?: boolean }): Promise<DaemonHandle> {
  const dir = tempDir(`daemon-${name}`);
  const tls = o.tls ? { tls: { ...o.tls, allowPlaintext: o.allowPlaintext ?? false } } : {};
  const d = await startTestDaemon({
    name,
    dir,
    seed: o.seed ?? false,
    schedulers: [`127.0.0.1:${schedulerPort}`],
    overrides: { storage: { dir, keep: true, server: { ip: "127.0.0.1", tcpPort: 0, quicPort: 0, ...tls } } },
  });
  running.push(d);
  return d;
}

async function swarm(size: number, parentOpts: { allowPlaintext?: boolean }): Promise<{ origin: Origin; schedulerPort: number; seed: DaemonHandle }> {
  const origin = await startOrigin(makeContent(size, 17));
  running.push(origin);
  const scheduler = await startTestScheduler();
  running.push(scheduler);
  const seed = await daemon("seed-1", scheduler.grpcPort, { tls: certs.get("seed-1"), seed: true, ...parentOpts });
  await downloadVia(seed.socketPath, { url: origin.url(), outputPath: join(tempDir("out-seed"), "f") });
  return { origin, schedulerPort: scheduler.grpcPort, seed };
}

describe("vortex over mutual TLS", () => {
  it("moves pieces between peers of one cluster CA over TLS", async () => {
    const { origin, schedulerPort, seed } = await swarm(24 * MiB, {});
    const peer = await daemon("peer-1", schedulerPort, { tls: certs.get("peer-1") });
    const out = join(tempDir("out-peer"), "f");
    await downloadVia(peer.socketPath, { url: origin.url(), outputPath: out });
    expect(sha256File(out)).toBe(origin.sha256);
    const pieces = peer.storage.list()[0]!.finished();
    expect(pieces.every((p) => p.parentId !== "")).toBe(true);
    const st = seed.pieceServerStats();
    expect(st.tlsConnectionsAccepted).toBeGreaterThanOrEqual(1);
    expect(st.tlsConnectionsAccepted).toBe(st.connectionsAccepted);
  });

  it("gives a peer without a certificate no piece: it goes to the origin", async () => {
    const { origin, schedulerPort, seed } = await swarm(8 * MiB, {});
    const plain = await daemon("plain-1", schedulerPort, {});
    const out = join(tempDir("out-plain"), "f");
    await downloadVia(plain.socketPath, { url: origin.url(), outputPath: out });
    expect(sha256File(out)).toBe(origin.sha256);
    expect(plain.storage.list()[0]!.finished().every((p) => p.parentId === "")).toBe(true);
    expect(seed.pieceServerStats().piecesServed).toBe(0);
  });

  it("serves plaintext children too with allowPlaintext", async () => {
    const { origin, schedulerPort, seed } = await swarm(8 * MiB, { allowPlaintext: true });
    const plain = await daemon("plain-2", schedulerPort, {});
    const out = join(tempDir("out-plain2"), "f");
    await downloadVia(plain.socketPath, { url: origin.url(), outputPath: out });
    expect(sha256File(out)).toBe(origin.sha256);
    expect(plain.storage.list()[0]!.finished().every((p) => p.parentId !== "")).toBe(true);
    const st = seed.pieceServerStats();
    expect(st.piecesServed).toBeGreaterThan(0);
    expect(st.tlsConnectionsAccepted).toBe(0);
  });
});
