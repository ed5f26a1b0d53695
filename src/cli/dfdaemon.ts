// `dfdaemon --config dfdaemon.yaml`: the resident peer (or seed peer) daemon.
import { createLogger } from "../common/logger.js";
import { withTracing } from "../common/tracing.js";
import { loadDaemonConfig } from "../daemon/config.js";
import { startDaemon } from "../daemon/daemon.js";
import { newProgram, runProgram } from "./program.js";

export async function main(argv: string[]): Promise<number> {
  const program = newProgram("dfdaemon", "the peer daemon: downloads, caches and serves pieces");
  program
    .option("-c, --config <file>", "config file (YAML, Dragonfly's dfdaemon.yaml keys)")
    .option("--data-dir <dir>", "storage directory when the config sets none", "/var/lib/dragonfly")
    .option("-l, --log-level <level>", "log level", "info")
    .action(async (opts: { config?: string; dataDir: string; logLevel: string }) => {
      const config = loadDaemonConfig(opts.config, { dataDir: opts.dataDir });
      const log = createLogger({ component: config.seedPeer.enable ? "seed-peer" : "dfdaemon", level: opts.logLevel });
      const daemon = await withTracing(config.seedPeer.enable ? "seed-peer" : "dfdaemon", config.tracing, () => startDaemon(config, log));
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
      });
      log.info("dfdaemon stopping");
      await daemon.close();
    });
  return runProgram(program, argv);
}
