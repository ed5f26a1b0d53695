// `dfget URL -O PATH`: download through the local dfdaemon (found as ./endpoint.ts says, or a
// one-shot daemon started here when none runs), with Dragonfly's flags. The daemon writes the
// output atomically; stdout output (`-O -`) streams pieces in order as they land. `-r` downloads
// a directory of an object store, HDFS, a local path or a model hub (./dfget-directory.ts).
import { randomUUID } from "node:crypto";
import { credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import type { SingleBar } from "cli-progress";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Option } from "commander";
import { MAX_MESSAGE_BYTES } from "../common/grpc/server.js";
import { redactUrl } from "../common/redact-url.js";
import { inSpan, loadTracingSection, startTracing, tracingClientOptions } from "../common/tracing.js";
import { SpanKind } from "@opentelemetry/api";
import type { DaemonConfig } from "../daemon/config.js";
import { parseDigest } from "../daemon/task/digest.js";
import { Download, TaskType } from "../gen/common/v2/common.js";
import { DfdaemonDownloadClient, ListTaskEntriesRequest, type DownloadTaskResponse, type Entry } from "../gen/dfdaemon/v2/dfdaemon.js";
import { isObjectStorageScheme } from "../common/object-storage.js";
import { REPO_COMMIT_HEADER } from "../common/model-hub.js";
import { directoryUrl, downloadDirectory } from "./dfget-directory.js";
import { checkSelection, selects, type FileSelection } from "./dfget-select.js";
import { daemonCallError, daemonTarget, discoverEndpoint, endpointOption, isExplicit, unreachableError } from "./endpoint.js";
import { addObjectStorageOptions, objectStorageOf, type ObjectStorageFlags } from "./object-storage-flags.js";
import { addModelHubOptions, modelHubOf, type ModelHubFlags } from "./model-hub-flags.js";
import { addHdfsOptions, hdfsOf, type HdfsFlags } from "./hdfs-flags.js";
import { newProgram, runProgram } from "./program.js";

interface DfgetOptions extends ObjectStorageFlags, ModelHubFlags, HdfsFlags {
  output: string;
  digest?: string;
  header: string[];
  tag?: string;
  application?: string;
  filteredQueryParam: string[];
  pieceLength?: number;
  timeout: string;
  priority: number;
  disableBackToSource?: boolean;
  overwrite?: boolean;
  recursive?: boolean;
  includeFiles: string[];
  excludeFiles: string[];
  progress: boolean;
  endpoint?: string;
  forceHardLink?: boolean;
  contentForCalculatingTaskId?: string;
  config?: string;
  scheduler: string[];
}

const collect = (v: string, prev: string[]) => [...prev, v];

function parseHeaders(list: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of list) {
    const i = h.indexOf(":");
    if (i <= 0) throw new Error(`invalid header "${h}": expected "Name: value"`);
    out[h.slice(0, i).trim()] = h.slice(i + 1).trim();
  }
  return out;
}

function parseTimeoutMs(text: string): number {
  const m = /^(\d+)(ms|s|m|h)$/.exec(text);
  if (!m?.[1]) throw new Error(`invalid --timeout "${text}": expected e.g. 30s, 10m, 2h`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as "ms" | "s" | "m" | "h"];
}

function human(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = bytes;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

/** A daemon for this one download when none listens on the endpoint, stopped afterwards. */
async function oneShotDaemon(opts: DfgetOptions): Promise<{ socket: string; stop(): Promise<void> }> {
  // Loaded only here: a resident daemon is the common case and dfget should start fast.
  const { startDaemon } = await import("../daemon/daemon.js");
  const { loadDaemonConfig } = await import("../daemon/config.js");
  const dir = mkdtempSync(join(tmpdir(), "dfget-"));
  const base = loadDaemonConfig(opts.config, { dataDir: dir });
  const config: DaemonConfig = {
    ...base,
    scheduler: { ...base.scheduler, addrs: opts.scheduler.length > 0 ? opts.scheduler : base.scheduler.addrs },
    upload: { ...base.upload, server: { ...base.upload.server, ip: "127.0.0.1", port: 0 } },
    storage: { ...base.storage, dir, keep: false, server: { ...base.storage.server, ip: "127.0.0.1", tcpPort: 0, quicPort: base.storage.server.quicPort < 0 ? -1 : 0 } },
    health: { server: { ip: "127.0.0.1", port: 0 } },
    metrics: { server: { ip: "127.0.0.1", port: 0 } },
    // Its own tmpfs root: the resident daemon's (same host id) is not this process's to fill or empty.
    resolved: { ...base.resolved, storageDir: dir, socketPath: join(dir, "dfdaemon.sock"), privateTmpfs: true },
  };
  const { silentLogger } = await import("../common/logger.js");
  const started = startDaemon(config, silentLogger());
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      process.off("SIGINT", onSignal).off("SIGTERM", onSignal);
      // A daemon that failed to start has closed itself already.
      const d = await started.catch(() => undefined);
      await d?.close();
      rmSync(dir, { recursive: true, force: true });
    })());
  // Interrupted, even while starting, it still removes its directories (and a memory-tier
  // daemon's own tmpfs root, which would otherwise hold the download's bytes in RAM until reboot).
  const onSignal = (signal: NodeJS.Signals) => {
    void stop().finally(() => process.exit(128 + (signal === "SIGINT" ? 2 : 15)));
  };
  process.once("SIGINT", onSignal).once("SIGTERM", onSignal);
  try {
    return { socket: (await started).socketPath, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** The Download dfget asks for: `output` undefined means stdout (pieces ride in the answers). */
function downloadOf(url: string, output: string | undefined, opts: DfgetOptions, timeoutMs: number): Download {
  return Download.fromPartial({
    url,
    digest: opts.digest,
    type: TaskType.STANDARD,
    tag: opts.tag,
    application: opts.application,
    priority: opts.priority,
    filteredQueryParams: opts.filteredQueryParam,
    requestHeader: parseHeaders(opts.header),
    pieceLength: opts.pieceLength,
    outputPath: output,
    timeout: { seconds: Math.floor(timeoutMs / 1000), nanos: 0 },
    disableBackToSource: opts.disableBackToSource === true,
    needBackToSource: false,
    certificateChain: [],
    prefetch: false,
    isPrefetch: false,
    needPieceContent: output === undefined,
    forceHardLink: opts.forceHardLink === true,
    contentForCalculatingTaskId: opts.contentForCalculatingTaskId,
    overwrite: opts.overwrite === true,
    enableTaskIdBasedBlobDigest: false,
    objectStorage: objectStorageOf(url, opts),
    ...modelHubOf(url, opts),
    hdfs: hdfsOf(url, opts),
  });
}

/** The daemon dfget talks to: the discovered one, or a one-shot daemon started for this run. */
interface DaemonSession {
  client: DfdaemonDownloadClient;
  /** A daemon call's failure as the user's error (a one-shot daemon has no endpoint to explain). */
  failed(e: ServiceError): Error;
  close(): Promise<void>;
}

async function openSession(opts: DfgetOptions): Promise<DaemonSession> {
  const ep = discoverEndpoint({ flag: opts.endpoint });
  let socket = ep.socket;
  let oneShot: { stop(): Promise<void> } | undefined;
  if (!existsSync(socket)) {
    // A socket the user named is the daemon they want: downloading elsewhere would hide a typo
    // or a stopped daemon. A found or default one may be absent; then download anyway, but say
    // so: a one-shot daemon is outside any running swarm and forgets the file afterwards.
    if (isExplicit(ep)) throw unreachableError(ep);
    process.stderr.write(`dfget: no dfdaemon at ${socket}; starting a one-shot daemon for this download (start one with 'damselfly up' or pass -e)\n`);
    const o = await oneShotDaemon(opts);
    socket = o.socket;
    oneShot = o;
  }
  // Pieces (up to 64 MiB) ride in messages when writing to stdout.
  const client = new DfdaemonDownloadClient(daemonTarget(socket), credentials.createInsecure(), { "grpc.max_receive_message_length": MAX_MESSAGE_BYTES * 2, ...tracingClientOptions() });
  return {
    client,
    failed: (e) => daemonCallError(e, oneShot ? undefined : ep),
    close: async () => {
      client.close();
      await oneShot?.stop();
    },
  };
}

/** Runs one download task to its end; `bar` follows it; stdout gets the pieces in order. Resolves to its length. */
function runTask(session: DaemonSession, d: Download, timeoutMs: number, bar: SingleBar | undefined): Promise<number> {
  const started = Date.now();
  let total = 0;
  let done = 0;
  return new Promise<number>((resolveDone, reject) => {
    const call = session.client.downloadTask({ download: d }, new Metadata(), { deadline: Date.now() + timeoutMs });
    // stdout needs the pieces in order; they arrive in any order.
    const held = new Map<number, Buffer>();
    let next = 0;
    call.on("data", (res: DownloadTaskResponse) => {
      const r = res.response;
      if (r?.$case === "downloadTaskStartedResponse") {
        // A second Started: the daemon restarted the task from scratch (the origin changed).
        total = r.downloadTaskStartedResponse.contentLength;
        done = 0;
        bar?.start(total, 0, { done: human(0), size: human(total), speed: human(0) });
      } else if (r?.$case === "downloadPieceFinishedResponse" && r.downloadPieceFinishedResponse.piece) {
        const p = r.downloadPieceFinishedResponse.piece;
        done += p.length;
        const secs = Math.max(0.001, (Date.now() - started) / 1000);
        bar?.update(done, { done: human(done), size: human(total), speed: human(done / secs) });
        if (d.needPieceContent && p.content) {
          held.set(p.number, p.content);
          for (let b = held.get(next); b; b = held.get(next)) {
            process.stdout.write(b);
            held.delete(next);
            next++;
          }
        }
      }
    });
    call.on("error", (e: ServiceError) => reject(session.failed(e)));
    call.on("end", () => resolveDone(total));
  });
}

/** The entries below a directory URL, listed by the daemon with the download's credentials, and the listing's response headers. */
function listEntries(session: DaemonSession, url: string, opts: DfgetOptions, timeoutMs: number): Promise<{ entries: Entry[]; responseHeader: Record<string, string> }> {
  const req = ListTaskEntriesRequest.fromPartial({ taskId: randomUUID(), url, requestHeader: parseHeaders(opts.header), objectStorage: objectStorageOf(url, opts), ...modelHubOf(url, opts), hdfs: hdfsOf(url, opts), timeout: { seconds: Math.floor(timeoutMs / 1000), nanos: 0 } });
  return new Promise((resolveList, reject) => {
    session.client.listTaskEntries(req, new Metadata(), { deadline: Date.now() + timeoutMs }, (e, res) => (e ? reject(session.failed(e)) : resolveList({ entries: res?.entries ?? [], responseHeader: res?.responseHeader ?? {} })));
  });
}

/**
 * The options each file of a listed directory is downloaded with: a model hub's listing says the
 * commit its revision was at (X-Repo-Commit, as the hub's own file answers say it), and every
 * file is then asked for at that commit, so a branch that moves during the download cannot give
 * files of two commits.
 */
function pinnedToListing(url: string, opts: DfgetOptions, responseHeader: Record<string, string>): DfgetOptions {
  const commit = responseHeader[REPO_COMMIT_HEADER];
  if (commit === undefined || !/^[0-9a-f]{40}$/.test(commit)) return opts;
  const scheme = new URL(url).protocol.replace(/:$/, "");
  if (scheme === "hf") return { ...opts, hfRevision: commit };
  if (scheme === "modelscope") return { ...opts, msRevision: commit };
  return opts;
}

/** Directory URLs: `-r`, or an object store's or HDFS URL ending in "/" (Dragonfly's dfget reads it as a directory too). */
function isDirectoryDownload(url: string, opts: DfgetOptions): boolean {
  const u = new URL(url);
  const scheme = u.protocol.replace(/:$/, "");
  return opts.recursive === true || ((isObjectStorageScheme(scheme) || scheme === "hdfs") && u.pathname.endsWith("/"));
}

async function download(url: string, opts: DfgetOptions): Promise<void> {
  try {
    new URL(url);
  } catch {
    throw new Error(`invalid URL: ${url}`);
  }
  if (opts.digest) parseDigest(opts.digest);
  parseHeaders(opts.header);
  const toStdout = opts.output === "-";
  const directory = isDirectoryDownload(url, opts);
  if (directory && toStdout) throw new Error("a recursive download writes into a directory: -O - (stdout) cannot take it");
  // One digest cannot cover many objects.
  if (directory && opts.digest) throw new Error("--digest verifies one file: it cannot be used with a recursive download");
  const select: FileSelection = { include: opts.includeFiles, exclude: opts.excludeFiles };
  if (selects(select) && !directory) throw new Error("--include-files and --exclude-files pick files of a directory: use them with -r/--recursive");
  checkSelection(select);
  const output = toStdout ? undefined : resolve(opts.output);
  const timeoutMs = parseTimeoutMs(opts.timeout);
  const session = await openSession(opts);
  const started = Date.now();
  try {
    if (directory) {
      const dirUrl = directoryUrl(url);
      const report = opts.progress !== false ? (line: string) => process.stderr.write(`${line}\n`) : undefined;
      let fileOpts = opts;
      const fetcher = {
        list: async (u: string) => {
          const listed = await listEntries(session, u, opts, timeoutMs);
          fileOpts = pinnedToListing(u, opts, listed.responseHeader);
          return listed.entries;
        },
        fetch: async (u: string, out: string) => {
          const n = await runTask(session, downloadOf(u, out, fileOpts, timeoutMs), timeoutMs, undefined);
          report?.(`dfget: ${human(n)} to ${out}`);
          return n;
        },
      };
      const r = await downloadDirectory(dirUrl, output ?? "", fetcher, { overwrite: opts.overwrite === true, select, report, warn: (line) => process.stderr.write(`${line}\n`) });
      const secs = (Date.now() - started) / 1000;
      report?.(`dfget: downloaded ${r.files} files, ${human(r.bytes)} in ${secs.toFixed(2)}s to ${output}`);
      return;
    }
    const bar = opts.progress && process.stderr.isTTY && !toStdout ? new (await import("cli-progress")).SingleBar({ format: "{bar} {percentage}% | {done}/{size} | {speed}/s | ETA {eta_formatted}", hideCursor: true, stream: process.stderr }) : undefined;
    let total: number;
    try {
      total = await runTask(session, downloadOf(url, output, opts, timeoutMs), timeoutMs, bar);
    } finally {
      bar?.stop();
    }
    const secs = (Date.now() - started) / 1000;
    if (!toStdout && opts.progress !== false) {
      process.stderr.write(`dfget: downloaded ${human(total)} in ${secs.toFixed(2)}s (${human(total / Math.max(secs, 0.001))}/s) to ${output}\n`);
    }
  } finally {
    await session.close();
  }
}

export async function main(argv: string[]): Promise<number> {
  const program = newProgram("dfget", "download a file through the P2P swarm");
  program
    .argument("<url>", "URL to download")
    .requiredOption("-O, --output <path>", "output file path, or - for stdout")
    .option("--digest <alg:hex>", "verify the whole file against this digest (sha256, sha512, blake3, crc32)")
    .option("-H, --header <header>", 'request header for the origin, "Name: value" (repeatable)', collect, [])
    .option("--tag <tag>", "tag that distinguishes tasks with the same URL")
    .option("--application <name>", "application the task belongs to")
    .option("--filtered-query-param <key>", "query parameter left out of the task id (repeatable)", collect, [])
    .addOption(new Option("--piece-length <bytes>", "piece length (4 MiB–64 MiB)").argParser((v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 4 << 20 || n > 64 << 20) throw new Error(`invalid --piece-length "${v}": expected 4194304–67108864`);
      return n;
    }))
    .option("--timeout <duration>", "give up after this long", "2h")
    .addOption(new Option("-p, --priority <level>", "priority 0–6").default(6).argParser((v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0 || n > 6) throw new Error(`invalid --priority "${v}": expected 0–6`);
      return n;
    }))
    .option("--disable-back-to-source", "never fetch from the origin, only from peers")
    .option("--overwrite", "replace an existing output file")
    .option("-r, --recursive", "download every object below a directory URL (s3, gs, abs, oss, obs, cos, hdfs, file) or every file of a model hub repository (hf, modelscope, at one commit) into the -O directory")
    .option("-I, --include-files <glob>", "with -r, download only the files whose path relative to the URL matches this glob; a pattern ending in / takes the directory's whole subtree (repeatable)", collect, [])
    .option("--exclude-files <glob>", "with -r, leave out the files whose relative path matches this glob, after --include-files (repeatable)", collect, [])
    .option("--no-progress", "no progress bar")
    .addOption(endpointOption())
    .option("--force-hard-link", "fail unless the output can be hard-linked to the cache")
    .option("--content-for-calculating-task-id <content>", "compute the task id from this instead of the URL")
    .option("-c, --config <file>", "dfdaemon config for the one-shot daemon (its tracing section also traces dfget)")
    .option("--scheduler <addr>", "scheduler address for the one-shot daemon (repeatable)", collect, []);
  addHdfsOptions(addModelHubOptions(addObjectStorageOptions(program)))
    .action(async (url: string, opts: DfgetOptions) => {
      // The config's tracing section traces dfget too: its span is the root of the download's trace.
      const stop = await startTracing("dfget", opts.config ? loadTracingSection(opts.config) : undefined);
      try {
        await inSpan("dfget", { "url.full": redactUrl(url) }, () => download(url, opts), SpanKind.CLIENT);
      } finally {
        await stop();
      }
    });
  return runProgram(program, argv);
}
