// One component of `damselfly up`, in its own process: `child.js <role> <config.yaml>`. It starts
// the component from its Dragonfly-style config file, tells the parent the ports it bound, and
// stops cleanly on SIGINT/SIGTERM or when the parent goes away (the IPC channel closes), so a
// killed `up` never leaves orphans holding ports.
import { createLogger } from "../common/logger.js";
import { withTracing } from "../common/tracing.js";
import { loadDaemonConfig } from "../daemon/config.js";
import { startDaemon } from "../daemon/daemon.js";
import { loadManagerConfig } from "../manager/config.js";
import { startManager } from "../manager/server.js";
import { loadSchedulerConfig } from "../scheduler/config.js";
import { startScheduler } from "../scheduler/server.js";
import type { ChildMessage, ComponentRole } from "./protocol.js";
import { errorMessage } from "../common/errors.js";

interface Running {
  message: ChildMessage;
  close(): Promise<void>;
}

async function start(role: ComponentRole, configPath: string): Promise<Running> {
  switch (role) {
    case "manager": {
      const cfg = loadManagerConfig(configPath);
      const m = await withTracing("manager", cfg.tracing, () => startManager(cfg));
      return { message: { type: "ready", role, ports: { rest: m.restPort, grpc: m.grpcPort, metrics: m.metricsPort } }, close: () => m.close() };
    }
    case "scheduler": {
      const cfg = loadSchedulerConfig(configPath);
      const s = await withTracing("scheduler", cfg.tracing, () => startScheduler(cfg));
      return { message: { type: "ready", role, ports: { grpc: s.grpcPort, metrics: s.metricsPort } }, close: () => s.close() };
    }
    case "dfdaemon": {
      const config = loadDaemonConfig(configPath);
      const component = config.seedPeer.enable ? "seed-peer" : "dfdaemon";
      const d = await withTracing(component, config.tracing, () => startDaemon(config, createLogger({ component })));
      return {
        message: { type: "ready", role, hostId: d.hostId, socketPath: d.socketPath, ports: { upload: d.uploadPort, piece: d.piecePort, health: d.healthPort, metrics: d.metricsPort, proxy: d.proxyPort } },
        close: () => d.close(),
      };
    }
  }
}

function send(message: ChildMessage): void {
  if (process.send && process.connected) process.send(message);
}

export async function runChild(argv: string[]): Promise<number> {
  const [role, configPath] = argv;
  if ((role !== "manager" && role !== "scheduler" && role !== "dfdaemon") || !configPath) {
    process.stderr.write("usage: child <manager|scheduler|dfdaemon> <config.yaml>\n");
    return 2;
  }
  let running: Running;
  try {
    running = await start(role, configPath);
  } catch (e) {
    const message = errorMessage(e);
    process.stderr.write(`${role}: ${message}\n`);
    send({ type: "failed", message, addressInUse: /EADDRINUSE|address already in use|no free port/i.test(message) });
    return 1;
  }
  send(running.message);
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
    process.once("disconnect", resolve);
  });
  await running.close();
  return 0;
}

process.exitCode = await runChild(process.argv.slice(2));
// Handles left by libraries (keep-alive sockets, timers) must not keep a stopped component alive.
process.exit();
