// Idle piece connections to a parent are closed once no download of ours uses it (issue 19):
// after a child's download from a seed peer ends, the child holds no connection to the seed's
// piece port (the pool used to keep up to 8 per parent for 30 s, each a socket on the parent);
// a parent that two downloads share keeps its connections until the second one ends.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import type { SchedulerHandle } from "../../src/scheduler/server.js";
import { ParentLinks } from "../../src/daemon/storage/parent-links.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, sha256File, startTestDaemon, startTestScheduler, tempDir } from "../helpers/swarm.js";

const SIZE = 64 * 1024 * 1024;

/** Our established TCP connections to 127.0.0.1:`port`, as the kernel lists them. */
function connectionsTo(port: number): number {
  const out = execFileSync("ss", ["-Htn", "state", "established", "dst", `127.0.0.1:${port}`], { encoding: "utf8" });
  return out.split("\n").filter((l) => l.trim() !== "").length;
}

async function until(cond: () => boolean, ms = 3000): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 20))) if (cond()) return true;
  return cond();
}

describe("ParentLinks", () => {
  it("closes a parent's idle connections when the last round using it ends, once", () => {
    const closed: string[] = [];
    const links = new ParentLinks((addr) => {
      closed.push(addr);
      return 1;
    });
    const a = links.round();
    const b = links.round();
    a.use({ ip: "10.0.0.1", port: 4000 });
    a.use({ ip: "10.0.0.1", port: 4000 });
    a.use({ ip: "fd00::1", port: 4001, protocol: "quic" });
    b.use({ ip: "10.0.0.1", port: 4000 });
    a.end();
    // Still used by b; the IPv6 parent only by a.
    expect(closed).toEqual(["[fd00::1]:4001"]);
    expect(links.inUse()).toEqual(["10.0.0.1:4000"]);
    a.end();
    b.end();
    expect(closed).toEqual(["[fd00::1]:4001", "10.0.0.1:4000"]);
    // A round that ended takes no more addresses.
    b.use({ ip: "10.0.0.2", port: 4000 });
    expect(links.inUse()).toEqual([]);
  });
});

describe("dfdaemon piece connections after a download", () => {
  let origin: Origin;
  let scheduler: SchedulerHandle;
  let seed: DaemonHandle;
  let child: DaemonHandle;
  const out = tempDir("outputs-parent-links");

  beforeAll(async () => {
    origin = await startOrigin(makeContent(SIZE, 23));
    scheduler = await startTestScheduler();
    const addr = `127.0.0.1:${scheduler.grpcPort}`;
    seed = await startTestDaemon({ name: "seed-links", schedulers: [addr], seed: true });
    child = await startTestDaemon({ name: "child-links", schedulers: [addr] });
  });

  afterAll(async () => {
    for (const d of [child, seed]) await d?.close();
    await scheduler?.close();
    await origin?.close();
    cleanupTempDirs();
  });

  it("leaves no connection open to the parent once the download is done", async () => {
    const path = join(out, "a");
    await downloadVia(child.socketPath, { url: origin.url(), outputPath: path });
    expect(sha256File(path)).toBe(origin.sha256);
    // The child got its pieces from the seed peer, over connections of its own.
    expect(seed.pieceServerStats().connectionsAccepted).toBeGreaterThan(0);
    expect(await until(() => connectionsTo(seed.piecePort) === 0)).toBe(true);
    expect(child.tasks.parentLinks.inUse()).toEqual([]);
  });
});
