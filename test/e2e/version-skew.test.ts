// Version skew: a dfdaemon of the previous release (PREVIOUS_RELEASE, built from this clone's
// git history and cached outside it, see harness/previous-release.ts) next to this tree's
// manager, scheduler and dfdaemon, as in a rolling upgrade. The old daemon finds the scheduler
// through the new manager and registers; it downloads back-to-source, and a new daemon then
// gets the same file from it over P2P; and the other way round, the old daemon (through its
// own dfget, which checks the digest) gets from the new one a file the new one fetched from
// the origin. Every copy's sha256 equals the origin's. A clone without that history fails.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { stringify } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/common/logger.js";
import type { DaemonHandle } from "../../src/daemon/daemon.js";
import { startManager, type ManagerHandle } from "../../src/manager/server.js";
import { startScheduler, type SchedulerHandle } from "../../src/scheduler/server.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";
import { cleanupTempDirs, downloadVia, sha256File, startTestDaemon, tempDir } from "../helpers/swarm.js";
import { until } from "../helpers/until.js";
import { PREVIOUS_RELEASE, previousRelease } from "./harness/previous-release.js";

const run = promisify(execFile);
const SIZE = 48 * 1024 * 1024 + 77;
/** npm ci and the Rust core of the previous release on a host that has not built it yet. */
const COLD_BUILD_MS = 45 * 60_000;

describe(`version skew: the previous release's dfdaemon (${PREVIOUS_RELEASE.slice(0, 12)}) with this manager, scheduler and dfdaemon`, () => {
  let release: string;
  let manager: ManagerHandle;
  let scheduler: SchedulerHandle;
  let oldDaemon: ChildProcess | undefined;
  let oldSocket: string;
  let newDaemon: DaemonHandle;
  const origins: Origin[] = [];
  const out = tempDir("skew-out");

  /** The old release's own dfget through the old daemon, verifying the digest as it goes. */
  const oldDfget = async (origin: Origin, output: string) => {
    await run(process.execPath, [join(release, "bin/dfget.js"), origin.url(), "-O", output, "-e", oldSocket, "--digest", `sha256:${origin.sha256}`, "--no-progress"], { timeout: 300_000 });
  };

  beforeAll(async () => {
    // Fails the suite (never skips it) when the clone lacks the release's history.
    release = previousRelease((m) => console.log(m));
    manager = await startManager(
      {
        server: { dataDir: tempDir("skew-manager"), logLevel: "silent", grpc: { listenIP: "127.0.0.1", port: { start: 0, end: 0 } }, rest: { addr: "127.0.0.1:0" } },
        metrics: { enable: false },
      },
      { logger: silentLogger(), env: { DRAGONFLY_INITIAL_ROOT_PASSWORD: "skew-root-password-1" } },
    );
    const managerAddr = `127.0.0.1:${manager.grpcPort}`;
    scheduler = await startScheduler(
      {
        server: { listenIP: "127.0.0.1", port: 0, advertiseIP: "127.0.0.1", advertisePort: 0, host: "skew-scheduler", logLevel: "silent" },
        metrics: { enable: false },
        manager: { addr: managerAddr, keepAlive: { interval: "1s" } },
      },
      { logger: silentLogger() },
    );
    await until(async () => (await manager.db.query<{ state: string }>("SELECT state FROM schedulers WHERE host_name = 'skew-scheduler'"))[0]?.state === "active", "the scheduler active in the manager", 10_000);

    // The old daemon's config in the keys its release knows (it refuses unknown ones).
    const dir = tempDir("skew-old");
    oldSocket = join(dir, "dfdaemon.sock");
    const config = join(dir, "dfdaemon.yaml");
    writeFileSync(
      config,
      stringify({
        host: { ip: "127.0.0.1", hostname: "skew-old" },
        download: { server: { socketPath: oldSocket }, collectedPieceTimeout: "10s", pieceTimeout: "30s" },
        upload: { server: { ip: "127.0.0.1", port: 0 } },
        manager: { addr: managerAddr },
        dynconfig: { refreshInterval: "1s" },
        scheduler: { announceInterval: "30s" },
        storage: { dir, keep: true, server: { ip: "127.0.0.1", tcpPort: 0 } },
        health: { server: { ip: "127.0.0.1", port: 0 } },
        metrics: { server: { ip: "127.0.0.1", port: 0 } },
        security: { allowedBackToSourceCIDRs: ["127.0.0.0/8"] },
      }),
    );
    oldDaemon = spawn(process.execPath, [join(release, "bin/dfdaemon.js"), "--config", config, "--log-level", "error"], { stdio: ["ignore", "ignore", "inherit"] });
    await until(() => existsSync(oldSocket), "the old daemon's socket", 60_000);
    newDaemon = await startTestDaemon({ name: "skew-new", schedulers: [], overrides: { manager: { addr: managerAddr }, dynconfig: { refreshInterval: "1s" } } });
  }, COLD_BUILD_MS);

  afterAll(async () => {
    if (oldDaemon && oldDaemon.exitCode === null && oldDaemon.signalCode === null) {
      const exited = new Promise((r) => oldDaemon?.once("exit", r));
      oldDaemon.kill("SIGTERM");
      await exited;
    }
    await newDaemon?.close();
    await scheduler?.close();
    await manager?.close();
    for (const o of origins) await o.close();
    cleanupTempDirs();
  });

  const hostNamed = (name: string) => [...scheduler.resource.hosts.values()].find((h) => h.hostname === name);

  it("the old daemon finds the scheduler through the new manager and registers with it", async () => {
    await until(() => hostNamed("skew-old") !== undefined && hostNamed("skew-new") !== undefined, "both daemons announced to the scheduler", 30_000);
    const old = hostNamed("skew-old");
    expect(old?.ip).toBe("127.0.0.1");
    expect(old?.message.port).toBeGreaterThan(0);
    expect(old?.isSeed).toBe(false);
  });

  it("the old daemon downloads back-to-source, and a new daemon gets the file from it over P2P", async () => {
    const origin = await startOrigin(makeContent(SIZE, 51), "/old-first.bin");
    origins.push(origin);
    const oldOut = join(out, "old-first.old");
    await oldDfget(origin, oldOut);
    expect(sha256File(oldOut)).toBe(origin.sha256);
    expect(origin.bytesServed).toBeGreaterThanOrEqual(SIZE);

    const before = origin.bytesServed;
    const newOut = join(out, "old-first.new");
    const got = await downloadVia(newDaemon.socketPath, { url: origin.url(), outputPath: newOut });
    expect(got.contentLength).toBe(SIZE);
    expect(sha256File(newOut)).toBe(origin.sha256);
    // Only the new daemon's metadata probe (a 1-byte range) reached the origin; every piece
    // came from the old daemon.
    expect(origin.bytesServed - before).toBeLessThanOrEqual(8);
    const pieces = newDaemon.storage.get(got.taskId)?.finished() ?? [];
    expect(pieces.length).toBe(got.pieces);
    expect(pieces.filter((p) => !p.parentId.startsWith("127.0.0.1-skew-old-")).map((p) => p.parentId)).toEqual([]);
  });

  it("a new daemon downloads back-to-source, and the old daemon gets the file from it over P2P", async () => {
    const origin = await startOrigin(makeContent(SIZE, 53), "/new-first.bin");
    origins.push(origin);
    const newOut = join(out, "new-first.new");
    const { taskId } = await downloadVia(newDaemon.socketPath, { url: origin.url(), outputPath: newOut });
    expect(sha256File(newOut)).toBe(origin.sha256);
    expect(origin.bytesServed).toBeGreaterThanOrEqual(SIZE);

    const before = origin.bytesServed;
    const oldOut = join(out, "new-first.old");
    await oldDfget(origin, oldOut);
    expect(sha256File(oldOut)).toBe(origin.sha256);
    expect(origin.bytesServed - before).toBeLessThanOrEqual(8);
    // The scheduler saw the old daemon's peer of the task succeed.
    const peers = scheduler.resource.tasks.get(taskId)?.dag.values() ?? [];
    expect(peers.filter((p) => p.host.hostname === "skew-old" && p.fsm.is("Succeeded"))).toHaveLength(1);
  });
});
