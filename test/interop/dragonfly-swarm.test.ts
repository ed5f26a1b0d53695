// Dragonfly's published Rust client (dfdaemon + dfget, DRAGONFLY_CLIENT_VERSION) in one swarm
// with ours, on loopback (issue 19): it registers through our manager and scheduler, takes
// pieces from our seed peer over vortex TCP and QUIC, serves pieces to our daemons, and shares
// a task with them under our scheduler. Every output is checked against the origin's sha256 and
// the origin's egress is counted, so "pieces came from the swarm" is measured, not assumed.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, sha256File, tempDir } from "../helpers/swarm.js";
import { dragonflyBinDir, dragonflyDfget, startDragonflyDaemon, type DragonflyDaemon } from "../helpers/dragonfly.js";
import { startOurStack, type OurStack } from "./harness/stack.js";

const MiB = 1 << 20;

describe("a real Dragonfly client in our swarm", () => {
  let stack: OurStack;
  const origins: Origin[] = [];
  const dragonflies: DragonflyDaemon[] = [];
  let out: string;

  const origin = async (size: number, seed: number) => {
    const o = await startOrigin(makeContent(size, seed), `/interop-${seed}.bin`);
    origins.push(o);
    return o;
  };
  const dragonfly = async (name: string, protocol: "tcp" | "quic" = "tcp") => {
    const d = await startDragonflyDaemon({ name, dir: tempDir(`interop-${name}`), managerAddr: stack.managerAddr, protocol });
    dragonflies.push(d);
    return d;
  };
  const dfgetOk = async (d: DragonflyDaemon, url: string, file: string) => {
    const r = await dragonflyDfget(d.socket, url, file);
    expect(r.code, r.output.slice(-3000)).toBe(0);
  };

  beforeAll(async () => {
    dragonflyBinDir(); // fails the suite at once, with the install hint, when the client is missing
    stack = await startOurStack();
    out = tempDir("interop-out");
    mkdirSync(out, { recursive: true });
  });

  afterAll(async () => {
    for (const d of dragonflies.splice(0)) await d.stop("SIGKILL");
    await stack?.close();
    for (const o of origins.splice(0)) await o.close();
    cleanupTempDirs();
  });

  it("1. a Dragonfly dfdaemon registers through our manager and scheduler, stays healthy, and leaves cleanly on SIGTERM", async () => {
    const d = await dragonfly("df-register");
    const hosts = stack.scheduler.resource.hosts;
    await expect.poll(() => hosts.has(d.hostId), { timeout: 30_000, interval: 100 }).toBe(true);
    const host = hosts.get(d.hostId);
    // Real host statistics arrived whole: the cgroup "unlimited" memory limit (above 2^53) once
    // failed the whole AnnounceHost; it is clamped, the other counters are the host's own.
    expect(host?.message.memory?.total).toBeGreaterThan(0);
    expect(host?.message.cpu?.logicalCount).toBeGreaterThan(0);
    expect(host?.message.network?.uploadTcpConnectionCount).toBeGreaterThanOrEqual(0);
    const first = host?.updatedAt ?? 0;
    // Stays healthy across announcements (announceInterval 10 s in the harness's config).
    await expect.poll(() => (hosts.get(d.hostId)?.updatedAt ?? 0) > first, { timeout: 30_000, interval: 200 }).toBe(true);
    expect(await d.healthy()).toBe(true);
    const exit = await d.stop("SIGTERM");
    expect(exit, d.output().slice(-3000)).toEqual({ code: 0, signal: null });
    // LeaveHost reached the scheduler.
    await expect.poll(() => hosts.has(d.hostId), { timeout: 10_000, interval: 100 }).toBe(false);
  });

  for (const protocol of ["tcp", "quic"] as const) {
    it(`2. Dragonfly's dfget (${protocol}) downloads 256 MiB our seed peer fetched: pieces from the seed, exit 0, sha256 equal, origin ≤ 1.05×`, async () => {
      const size = 256 * MiB + 4321;
      const o = await origin(size, protocol === "tcp" ? 21 : 22);
      const seed = stack.seed as DaemonHandle;
      await downloadVia(seed.socketPath, { url: o.url(), outputPath: join(out, `seed-${protocol}.bin`) });
      expect(o.bytesServed).toBeGreaterThanOrEqual(size);
      const d = await dragonfly(`df-get-${protocol}`, protocol);
      const file = join(out, `df-${protocol}.bin`);
      await dfgetOk(d, o.url(), file);
      expect(sha256File(file)).toBe(o.sha256);
      // Only our seed peer held the task: whatever the origin did not send came from it.
      expect(o.bytesServed).toBeLessThanOrEqual(size * 1.05);
    });
  }

  it("4. a mixed swarm of 4 Dragonfly and 4 Damselfly daemons under our scheduler: every output verifies, origin ≤ 1.05×", async () => {
    const size = 64 * MiB + 99;
    const o = await origin(size, 41);
    const ours = await Promise.all([1, 2, 3, 4].map((i) => stack.addPeer(`our-mixed-${i}`)));
    const theirs = await Promise.all([1, 2, 3, 4].map((i) => dragonfly(`df-mixed-${i}`)));
    await Promise.all([
      ...ours.map((p, i) => downloadVia(p.socketPath, { url: o.url(), outputPath: join(out, `mixed-our-${i}.bin`) })),
      ...theirs.map((d, i) => dfgetOk(d, o.url(), join(out, `mixed-df-${i}.bin`))),
    ]);
    for (let i = 0; i < 4; i++) {
      expect(sha256File(join(out, `mixed-our-${i}.bin`)), `ours ${i}`).toBe(o.sha256);
      expect(sha256File(join(out, `mixed-df-${i}.bin`)), `Dragonfly ${i}`).toBe(o.sha256);
    }
    expect(o.bytesServed).toBeLessThanOrEqual(size * 1.05);
    for (const p of ours) await p.close();
  });

  it("3. our daemon downloads a task held only by a Dragonfly daemon (our seed stopped): all pieces from it, sha256 equal", async () => {
    await stack.stopSeed();
    const size = 64 * MiB + 7;
    const o = await origin(size, 31);
    const d = await dragonfly("df-holder");
    await dfgetOk(d, o.url(), join(out, "held-df.bin"));
    expect(sha256File(join(out, "held-df.bin"))).toBe(o.sha256);
    const served = o.bytesServed;
    expect(served).toBeGreaterThanOrEqual(size);
    const ours = await stack.addPeer("our-from-df");
    const file = join(out, "held-ours.bin");
    const r = await downloadVia(ours.socketPath, { url: o.url(), outputPath: file });
    expect(r.contentLength).toBe(size);
    expect(sha256File(file)).toBe(o.sha256);
    // At most the daemon's metadata probe reached the origin: every piece came from Dragonfly's daemon.
    expect(o.bytesServed - served).toBeLessThanOrEqual(1024);
  });
});
