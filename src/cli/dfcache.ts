// `dfcache`: the local cache as files — `stat` a cached task, `export` it to a path (served from
// this host's cache, verified, written atomically by the daemon like dfget).
import { credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { resolve } from "node:path";
import { Download, TaskType, type Task } from "../gen/common/v2/common.js";
import { DfdaemonDownloadClient } from "../gen/dfdaemon/v2/dfdaemon.js";
import { daemonCallError, daemonTarget, discoverEndpoint, endpointOption, requireSocket, type Endpoint } from "./endpoint.js";
import { newProgram, runProgram } from "./program.js";

type Client = InstanceType<typeof DfdaemonDownloadClient>;

function statTask(c: Client, ep: Endpoint, taskId: string): Promise<Task> {
  return new Promise((res, rej) => c.statTask({ taskId }, new Metadata(), (err, t) => (err ? rej(daemonCallError(err, ep)) : res(t))));
}

export async function main(argv: string[]): Promise<number> {
  const program = newProgram("dfcache", "inspect and export files in the local cache");
  program.addOption(endpointOption());
  // Discovered when a command runs: only then are the global options parsed.
  const connect = (): { c: Client; ep: Endpoint } => {
    const ep = discoverEndpoint({ flag: program.opts<{ endpoint?: string }>().endpoint });
    requireSocket(ep);
    return { c: new DfdaemonDownloadClient(daemonTarget(ep.socket), credentials.createInsecure()), ep };
  };
  program
    .command("stat <taskId>")
    .description("show a cached task: URL, length, pieces held, state")
    .action(async (taskId: string) => {
      const { c, ep } = connect();
      try {
        const t = await statTask(c, ep, taskId);
        process.stdout.write(`${JSON.stringify({ id: t.id, url: t.url, contentLength: t.contentLength, pieceCount: t.pieceCount, piecesHeld: t.pieces.length, state: t.state, tag: t.tag, application: t.application }, null, 2)}\n`);
      } finally {
        c.close();
      }
    });
  program
    .command("export <taskId>")
    .description("write a cached task to a file (never from the origin)")
    .requiredOption("-O, --output <path>", "output file path")
    .option("--overwrite", "replace an existing output file")
    .action(async (taskId: string, opts: { output: string; overwrite?: boolean }) => {
      const { c, ep } = connect();
      try {
        const t = await statTask(c, ep, taskId);
        if (t.state !== "Succeeded") throw new Error(`task ${taskId} is not complete in the cache (state ${t.state})`);
        // The same request that created the task, so the daemon resolves the same id; never
        // allowed back to the origin: an export serves what the cache holds.
        const download = Download.fromPartial({
          url: t.url,
          tag: t.tag,
          application: t.application,
          filteredQueryParams: t.filteredQueryParams,
          type: TaskType.STANDARD,
          outputPath: resolve(opts.output),
          overwrite: opts.overwrite === true,
          disableBackToSource: true,
        });
        await new Promise<void>((res, rej) => {
          const call = c.downloadTask({ download }, new Metadata());
          call.on("data", () => undefined);
          call.on("error", (e: ServiceError) => rej(daemonCallError(e, ep)));
          call.on("end", () => res());
        });
        process.stderr.write(`dfcache: exported ${taskId} to ${resolve(opts.output)}\n`);
      } finally {
        c.close();
      }
    });
  return runProgram(program, argv);
}
