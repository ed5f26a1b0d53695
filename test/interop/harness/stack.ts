// Our side of an interop run, on 127.0.0.1: a manager (embedded PGlite), a scheduler that
// registers with it (UpdateScheduler + KeepAlive, as Dragonfly's Go scheduler does) and one
// seed peer. Dragonfly's daemons find the scheduler through the manager (dynconfig), so the
// manager's ListSchedulers, the scheduler's AnnounceHost/AnnouncePeer and the seed peer's
// vortex server are all exercised by a real Dragonfly client.
import { silentLogger } from "../../../src/common/logger.js";
import type { DaemonHandle } from "../../../src/daemon/daemon.js";
import { startManager, type ManagerHandle } from "../../../src/manager/server.js";
import { startScheduler, type SchedulerHandle } from "../../../src/scheduler/server.js";
import { startTestDaemon, tempDir, type TestDaemonOptions } from "../../helpers/swarm.js";

export interface OurStack {
  manager: ManagerHandle;
  managerAddr: string;
  scheduler: SchedulerHandle;
  schedulerAddr: string;
  seed: DaemonHandle | undefined;
  /** One of our (non-seed) daemons under the same scheduler. */
  addPeer(name: string, overrides?: TestDaemonOptions["overrides"]): Promise<DaemonHandle>;
  /** Stops our seed peer (its host leaves the scheduler). */
  stopSeed(): Promise<void>;
  close(): Promise<void>;
}

export async function startOurStack(o: { seed?: boolean; seedOverrides?: TestDaemonOptions["overrides"] } = {}): Promise<OurStack> {
  const manager = await startManager(
    {
      server: { dataDir: tempDir("interop-manager"), logLevel: "silent", grpc: { listenIP: "127.0.0.1", port: { start: 0, end: 0 } }, rest: { addr: "127.0.0.1:0" } },
      metrics: { enable: false },
    },
    { logger: silentLogger(), env: { DRAGONFLY_INITIAL_ROOT_PASSWORD: "interop-pass-1" } },
  );
  const managerAddr = `127.0.0.1:${manager.grpcPort}`;
  const scheduler = await startScheduler(
    {
      server: { listenIP: "127.0.0.1", port: 0, advertiseIP: "127.0.0.1", advertisePort: 0, host: "interop-scheduler", logLevel: "silent" },
      metrics: { enable: false },
      manager: { addr: managerAddr, keepAlive: { interval: "1s" } },
    },
    { logger: silentLogger() },
  );
  const schedulerAddr = `127.0.0.1:${scheduler.grpcPort}`;
  const peers: DaemonHandle[] = [];
  let seed = o.seed === false ? undefined : await startTestDaemon({ name: "our-seed", schedulers: [schedulerAddr], seed: true, keep: true, overrides: o.seedOverrides });
  return {
    manager,
    managerAddr,
    scheduler,
    schedulerAddr,
    get seed() {
      return seed;
    },
    addPeer: async (name, overrides) => {
      const p = await startTestDaemon({ name, schedulers: [schedulerAddr], overrides });
      peers.push(p);
      return p;
    },
    stopSeed: async () => {
      await seed?.close();
      seed = undefined;
    },
    close: async () => {
      for (const p of peers.splice(0)) await p.close();
      await seed?.close();
      await scheduler.close();
      await manager.close();
    },
  };
}
