// `damselfly up [--data-dir DIR] [--peers N]`: the whole system on loopback in one command —
// manager (PGlite), scheduler, a seed peer and N peers — with a demo origin and a dfget example
// that works as printed. Ctrl-C stops everything; a second `up` in the same directory reuses
// the database, the generated root password and the peers' caches.
import { basename, dirname } from "node:path";
import type { Command } from "commander";
import { packageRoot, shellWord, startStack, type Stack } from "../../up/stack.js";
import { UP_DIR } from "../endpoint.js";

export interface UpCommandOptions {
  dataDir: string;
  peers: string;
  plaintext?: boolean;
}

/** The lines `up` prints once everything is healthy; the last one says `ready`. */
export function formatBanner(s: Stack): string {
  const d = (x: Stack["seed"]) =>
    `upload 127.0.0.1:${x.ports.upload}, pieces :${x.ports.piece}, health :${x.ports.health}, metrics :${x.ports.metrics}${x.ports.proxy ? `, proxy :${x.ports.proxy}` : ""}, socket ${x.socketPath}`;
  // Every URL printed here answers 200 (test/integration/up-stack.test.ts fetches each one).
  const lines = [
    `data dir      ${s.dataDir}`,
    s.manager.consoleUrl
      ? `console       ${s.manager.consoleUrl}  (web console: sign in with the credentials below)`
      : `console       not built: run \`npm run build:console\` in ${packageRoot}, then start up again`,
    `REST API      ${s.manager.apiUrl}/api/v1  (Swagger UI ${s.manager.apiUrl}/swagger/)`,
    s.manager.credentialsFile
      ? `credentials   user root, password in ${s.manager.credentialsFile}`
      : `credentials   user root, password from DRAGONFLY_INITIAL_ROOT_PASSWORD when the database was created`,
    `manager       gRPC 127.0.0.1:${s.manager.ports.grpc}, metrics :${s.manager.ports.metrics}`,
    `scheduler     gRPC ${s.scheduler.addr}, metrics :${s.scheduler.ports.metrics}`,
    s.certificates
      ? `mTLS          gRPC and piece connections require a certificate of the CA ${s.certificates.get("manager")?.caCert ?? ""}`
      : `mTLS          off (--plaintext): manager and scheduler gRPC accept anyone who reaches them`,
    `seed peer     ${d(s.seed)}`,
    ...s.peers.map((p) => `${p.name.padEnd(14)}${d(p)}`),
    `mirror        ${new URL(s.mirror.url).host} (registry mirror and HTTP proxy on ${s.mirror.peer})`,
    `demo origin   ${s.demo.url} (${s.demo.size >> 20} MiB, sha256 ${s.demo.sha256})`,
    `logs          ${s.logDir}`,
    "",
    "try:",
    `  ${s.dfgetExample}`,
    "",
    "pull images through the swarm (containerd; see README, \"Use it as a registry mirror\"):",
    `  ${s.initContainerdCommand}`,
    "",
    // Discovery looks for .damselfly/endpoint.json from the working directory upwards.
    basename(s.dataDir) === UP_DIR
      ? `dfget, dfctl and dfcache run in ${dirname(s.dataDir)} (or below) use ${s.mirror.peer} without -e`
      : `dfget, dfctl and dfcache use ${s.mirror.peer} without -e after: export DAMSELFLY_ENDPOINT=${shellWord(s.peers[0]?.socketPath ?? s.seed.socketPath)}`,
    "",
    `damselfly: ready — manager, scheduler, seed peer and ${s.peers.length} peer${s.peers.length === 1 ? "" : "s"} on 127.0.0.1 (Ctrl-C stops everything)`,
  ];
  return `${lines.join("\n")}\n`;
}

function parsePeers(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > 64) throw new Error(`--peers: "${text}" is not a number of peers from 1 to 64`);
  return n;
}

/** Runs `up` until SIGINT/SIGTERM or until a component dies; returns the exit code. */
export async function runUp(opts: UpCommandOptions, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const peers = parsePeers(opts.peers);
  const abort = new AbortController();
  let stopRequested = false;
  const onSignal = () => {
    if (stopRequested) return;
    stopRequested = true;
    out.write("damselfly: stopping\n");
    abort.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    let stack: Stack;
    try {
      stack = await startStack({ dataDir: opts.dataDir, peers, plaintext: opts.plaintext === true, signal: abort.signal, onProgress: (l) => out.write(`damselfly: ${l}\n`) });
    } catch (e) {
      if (stopRequested) {
        out.write("damselfly: stopped\n");
        return 130;
      }
      throw e;
    }
    out.write(formatBanner(stack));
    const stopped = new Promise<"signal">((r) => abort.signal.addEventListener("abort", () => r("signal"), { once: true }));
    const outcome = await Promise.race([stopped, stack.exited]);
    if (outcome !== "signal") out.write(`damselfly: ${outcome.name} exited unexpectedly (${outcome.signal ?? `code ${outcome.code}`}); stopping everything\n`);
    await stack.close();
    out.write("damselfly: stopped\n");
    return outcome === "signal" ? 0 : 1;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

export function register(program: Command): void {
  program
    .command("up")
    .description("run manager, scheduler, a seed peer and peers on 127.0.0.1 until Ctrl-C")
    .option("--data-dir <dir>", "where every component keeps its state (reused by the next up)", UP_DIR)
    .option("--peers <n>", "number of peers besides the seed peer", "1")
    .option("--plaintext", "gRPC without TLS (by default a cluster CA is generated and every component runs mTLS)")
    .action(async (opts: UpCommandOptions) => {
      process.exitCode = await runUp(opts);
    });
}
