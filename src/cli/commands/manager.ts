// `damselfly manager [--config manager.yaml] [--data-dir DIR]`: runs the manager until
// SIGINT/SIGTERM. REST on 8080, gRPC on 65003, metrics on 8000 by default.
import type { Command } from "commander";
import { withTracing } from "../../common/tracing.js";
import { loadManagerConfig } from "../../manager/config.js";
import { startManager, type ManagerHandle } from "../../manager/server.js";

export interface ManagerCommandOptions {
  config?: string;
  dataDir?: string;
}

/** Loads the config (a bad key or value throws ConfigError naming it) and starts serving. */
export async function startManagerCommand(opts: ManagerCommandOptions): Promise<ManagerHandle> {
  const cfg = loadManagerConfig(opts.config);
  if (opts.dataDir !== undefined) {
    if (opts.dataDir === "") throw new Error("--data-dir: must not be empty");
    cfg.server.dataDir = opts.dataDir;
    cfg.resolved.dataDir = opts.dataDir;
  }
  return withTracing("manager", cfg.tracing, () => startManager(cfg));
}

export { startManager };

export function register(program: Command): void {
  program
    .command("manager")
    .description("run the manager (REST + open API on 8080, manager.v2 gRPC on 65003, metrics on 8000)")
    .option("-c, --config <file>", "manager.yaml (Dragonfly's keys)")
    .option("--data-dir <dir>", "where the embedded database and the initial root password file live")
    .action(async (opts: ManagerCommandOptions) => {
      const handle = await startManagerCommand(opts);
      await new Promise<void>((resolve) => {
        process.once("SIGINT", () => resolve());
        process.once("SIGTERM", () => resolve());
      });
      await handle.close();
    });
}
