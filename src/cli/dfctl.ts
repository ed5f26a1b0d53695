// `dfctl`: inspect and control the local dfdaemon over its unix socket — list the tasks it
// holds, show one, remove one.
import { credentials, Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { DEFAULT_SOCKET_PATH } from "../daemon/constants.js";
import { DfdaemonDownloadClient, type StatLocalTaskResponse } from "../gen/dfdaemon/v2/dfdaemon.js";
import { newProgram, runProgram } from "./program.js";

type Client = InstanceType<typeof DfdaemonDownloadClient>;

/** Runs `use` with a client of the dfdaemon at `endpoint`, closed afterwards. */
async function withDaemon<T>(endpoint: string, use: (c: Client) => Promise<T>): Promise<T> {
  const c = new DfdaemonDownloadClient(`unix://${endpoint}`, credentials.createInsecure());
  try {
    return await use(c);
  } finally {
    c.close();
  }
}

function unary<T>(call: (cb: (err: ServiceError | null, res?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) =>
    call((err, res) => {
      if (err) reject(new Error(err.code === status.UNAVAILABLE ? "cannot reach the dfdaemon (is it running? see --endpoint)" : err.details || err.message));
      else resolve(res as T);
    }),
  );
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
  const endpoint = () => (program.opts<{ endpoint: string }>().endpoint);
  program.option("-e, --endpoint <socket>", "dfdaemon unix socket", DEFAULT_SOCKET_PATH);
  const task = program.command("task").description("tasks held by the local dfdaemon");
  task
    .command("ls")
    .description("list local tasks")
    .option("--json", "print JSON")
    .action(async (opts: { json?: boolean }) => {
      const res = await withDaemon(endpoint(), (c) => unary<{ tasks: StatLocalTaskResponse[] }>((cb) => c.listLocalTasks({}, new Metadata(), cb)));
      process.stdout.write(`${opts.json ? JSON.stringify(res.tasks, null, 2) : table(res.tasks.map(row))}\n`);
    });
  task
    .command("stat <taskId>")
    .description("show one local task")
    .action(async (taskId: string) => {
      const t = await withDaemon(endpoint(), (c) => unary<StatLocalTaskResponse>((cb) => c.statLocalTask({ taskId }, new Metadata(), cb)));
      process.stdout.write(`${JSON.stringify(t, null, 2)}\n`);
    });
  task
    .command("rm <taskId>")
    .description("delete a local task and its pieces")
    .action(async (taskId: string) => {
      await withDaemon(endpoint(), (c) => unary((cb) => c.deleteLocalTask({ taskId }, new Metadata(), cb)));
      process.stdout.write(`deleted ${taskId}\n`);
    });
  return runProgram(program, argv);
}
