// The seed-peer ring's choices when seeds fail: a preheat whose seed went away goes where the
// ring would send it had that seed left, and a seed that failed its health check is back on
// the ring as soon as it announces itself again. The seeds' ports are closed loopback ports,
// so health checks fail at once.
import { afterEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/common/logger.js";
import { Host as HostMessage } from "../../src/gen/common/v2/common.js";
import { SeedPeers } from "../../src/scheduler/seed-peers.js";
import { newResource } from "./scheduler-fixtures.js";

const open: SeedPeers[] = [];
afterEach(() => {
  for (const s of open.splice(0)) s.close();
});

function seeded(count: number) {
  const { resource } = newResource();
  // Port 1..count on loopback: nothing listens there.
  const hosts = Array.from({ length: count }, (_, i) => resource.announceHost(HostMessage.fromPartial({ id: `seed-${i}`, type: 1, hostname: `seed-${i}`, ip: "127.0.0.1", port: i + 1, downloadPort: i + 1 })));
  const seeds = new SeedPeers(resource, { taskDownloadTimeout: 1000, healthCheckInterval: 0 }, silentLogger());
  open.push(seeds);
  seeds.sync();
  return { resource, seeds, hosts };
}

describe("seed peers", () => {
  it("leaves the seeds in `except` out of a choice, as if they had left the ring", () => {
    const { resource, seeds } = seeded(3);
    for (let i = 0; i < 20; i++) {
      const task = `task-${i}`;
      const first = seeds.select(task);
      expect(first).toBeDefined();
      const next = seeds.select(task, new Set([first!.id]));
      expect(next).toBeDefined();
      expect(next?.id).not.toBe(first?.id);
      // The same seed a ring without the first one picks.
      const { resource: without, seeds: fewer } = seeded(0);
      for (const h of resource.hosts.values()) if (h.id !== first!.id) without.announceHost(h.message);
      fewer.sync();
      expect(fewer.select(task)?.id).toBe(next?.id);
    }
    expect(seeds.select("task-0", new Set(["seed-0", "seed-1", "seed-2"]))).toBeUndefined();
  });

  it("puts a seed that failed its health check back on the ring when it announces itself", async () => {
    const { seeds, hosts } = seeded(1);
    await seeds.refresh();
    expect(seeds.hasAvailable()).toBe(false);
    expect(seeds.select("task")).toBeUndefined();
    seeds.announced(hosts[0]!);
    expect(seeds.select("task")?.id).toBe("seed-0");
  });
});
