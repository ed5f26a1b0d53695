// `dfctl`: inspect and control the local dfdaemon over its unix socket — list the tasks it
// holds, show one, remove one.
import { credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { DfdaemonDownloadClient, type StatLocalTaskResponse } from "../gen/dfdaemon/v2/dfdaemon.js";
import { daemonCallError, daemonTarget, discoverEndpoint, endpointOption, requireSocket, type Endpoint } from "./endpoint.js";
import { newProgram, runProgram } from "./program.js";

type Client = InstanceType<typeof DfdaemonDownloadClient>;

type Unary<T> = (c: Client, cb: (err: ServiceError | null, res?: T) => void) => void;

/** Makes one call to the dfdaemon at `ep` with a client closed afterwards. */
async function callDaemon<T>(ep: Endpoint, call: Unary<T>): Promise<T> {
  requireSocket(ep);
  const c = new DfdaemonDownloadClient(daemonTarget(ep.socket), credentials.createInsecure());
  try {
    return await new Promise<T>((resolve, reject) =>
      call(c, (err, res) => {
        if (err) reject(daemonCallError(err, ep));
        else resolve(res as T);
      }),
    );
  } finally {
    c.close();
  }
}

function row(t: StatLocalTaskResponse): string[] {
  return [
    t.taskId,
    String(t.contentLength ?? 0),
    String(t.pieceLength ?? 0),
    t.finishedAt ? "Succeeded" : t.failedAt ? "Failed" : "Running",
    String(t.uploadedCount),
    t.updatedAt ? t.updatedAt.toISOString() : "",
  ];
}

function table(rows: string[][]): string {
  const head = ["TASK ID", "CONTENT LENGTH", "PIECE LENGTH", "STATE", "UPLOADED", "UPDATED AT"];
  const all = [head, ...rows];
  const widths = head.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  return all.map((r) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join("  ").trimEnd()).join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const program = newProgram("dfctl", "inspect and control the local dfdaemon");
  // Discovered when a command runs: only then are the global options parsed.
  const endpoint = () => discoverEndpoint({ flag: program.opts<{ endpoint?: string }>().endpoint });
  program.addOption(endpointOption());
  const task = program.command("task").description("tasks held by the local dfdaemon");
  task
    .command("ls")
    .description("list local tasks")
    .option("--json", "print JSON")
    .action(async (opts: { json?: boolean }) => {
      const res = await callDaemon<{ tasks: StatLocalTaskResponse[] }>(endpoint(), (c, cb) => c.listLocalTasks({}, new Metadata(), cb));
      process.stdout.write(`${opts.json ? JSON.stringify(res.tasks, null, 2) : table(res.tasks.map(row))}\n`);
    });
  task
    .command("stat <taskId>")
    .description("show one local task")
    .action(async (taskId: string) => {
      const t = await callDaemon<StatLocalTaskResponse>(endpoint(), (c, cb) => c.statLocalTask({ taskId }, new Metadata(), cb));
      process.stdout.write(`${JSON.stringify(t, null, 2)}\n`);
    });
  task
    .command("rm <taskId>")
    .description("delete a local task and its pieces")
    .action(async (taskId: string) => {
      await callDaemon(endpoint(), (c, cb) => c.deleteLocalTask({ taskId }, new Metadata(), cb));
      process.stdout.write(`deleted ${taskId}\n`);
    });
  return runProgram(program, argv);
}
