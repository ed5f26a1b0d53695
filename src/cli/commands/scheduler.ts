// `damselfly scheduler --config scheduler.yaml`: runs the scheduler until SIGINT/SIGTERM.
import type { Command } from "commander";
import { withTracing } from "../../common/tracing.js";
import { loadSchedulerConfig } from "../../scheduler/config.js";
import { startScheduler, type SchedulerHandle } from "../../scheduler/server.js";

export interface SchedulerCommandOptions {
  config?: string;
  port?: string;
}

/** Loads the config (a bad key or value throws ConfigError naming it) and starts serving. */
export async function startSchedulerCommand(opts: SchedulerCommandOptions): Promise<SchedulerHandle> {
  const cfg = loadSchedulerConfig(opts.config);
  if (opts.port !== undefined) {
    const port = Number(opts.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port: "${opts.port}" is not a port number`);
    cfg.server.port = port;
  }
  return withTracing("scheduler", cfg.tracing, () => startScheduler(cfg));
}

export function register(program: Command): void {
  program
    .command("scheduler")
    .description("run the scheduler (scheduler.v2 gRPC, default port 8002; metrics on 8000)")
    .option("-c, --config <file>", "scheduler.yaml (Dragonfly's keys)")
    .option("-p, --port <port>", "gRPC port (overrides server.port)")
    .action(async (opts: SchedulerCommandOptions) => {
      const handle = await startSchedulerCommand(opts);
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
      });
      await handle.close();
    });
}
