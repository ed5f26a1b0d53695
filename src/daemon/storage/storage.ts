// The daemon's task storage: native piece stores (one directory per task under the disk or
// tmpfs root) plus a small JSON record per task with what the native store does not know
// (URL, response headers, state). The JSON is written atomically after the fact, so a crash
// leaves at worst a task whose pieces are intact and whose state is re-derived on open.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { isTaskId } from "../../common/ids.js";
import type { Logger } from "../../common/logger.js";
import { DigestHasher, deleteTaskStore, openTaskStore, type ExtraDigest, type FetchPieceOptions, type NativePieceInfo, type NativeTaskStore } from "../../native/index.js";
import { addrOf } from "./parent-links.js";
import type { ParentAddress, PieceDeadlines, PieceInfo, PieceRace, PlainSink, TaskMetadata, TaskStore } from "./types.js";
import { errorMessage } from "../../common/errors.js";
import { sealedWith, type AtRest } from "./at-rest.js";
import type { TenantKey } from "./tenant-keys.js";

const META_FILE = "task.json";
/** Per tier: bytes of origins that do not tell their length, until a task can hold them (task/unknown-length.ts). */
const STAGING_DIR = ".staging";
const NATIVE_DIGESTS = new Set(["sha256", "blake3", "crc32", "crc32c"]);

/**
 * The collision-resistant digest every piece gets next to its CRC, in the same pass over its
 * bytes (native store): a back-to-source peer reports it to the scheduler, and receivers check
 * what parents send against it (piece/vouched.ts). BLAKE3 rather than SHA-256: on this 2-core
 * host the addon hashed a 4 MiB piece at 0.96-1.15 GiB/s with BLAKE3 and 0.56 GiB/s with
 * SHA-256 (CRC-32: 5.7-6.6 GiB/s); Dragonfly's digest syntax carries both (`blake3:<hex>`).
 * Stores created before keep the setting they were created with.
 */
const PIECE_DIGEST: ExtraDigest = "blake3";

/**
 * Pieces read and written at once when a task sealed at rest is written out in plain: each
 * read opens its piece on the addon's threads while other pieces are written, so both cores
 * stay busy.
 */
const PLAIN_WRITERS = 4;

export function pieceInfoOf(p: NativePieceInfo): PieceInfo {
  const info: PieceInfo = { number: p.number, offset: p.offset, length: p.length, digest: p.digest, parentId: p.parentId, createdAt: p.createdAtMs, finishedAt: p.finishedAtMs };
  if (p.extraDigest) info.extraDigest = p.extraDigest;
  return info;
}

/** The native request options for `deadlines`. */
function timeouts(d: PieceDeadlines): { pieceTimeoutMs: number; firstByteTimeoutMs?: number; stallTimeoutMs?: number } {
  return { pieceTimeoutMs: d.pieceMs, ...(d.firstByteMs !== undefined ? { firstByteTimeoutMs: d.firstByteMs } : {}), ...(d.stallMs !== undefined ? { stallTimeoutMs: d.stallMs } : {}) };
}

/** Where and how to ask `parent`: its address, protocol, and our TLS identity over TCP. */
function route(parent: ParentAddress, tls: PieceClientTls | undefined): Pick<FetchPieceOptions, "addr" | "protocol" | "tls"> {
  return { addr: addrOf(parent), protocol: parent.protocol, ...(tls && parent.protocol !== "quic" ? { tls } : {}) };
}

class LocalTask implements TaskStore {
  constructor(
    readonly meta: TaskMetadata,
    private readonly native: NativeTaskStore,
    private readonly dir: string,
    private readonly tls: PieceClientTls | undefined,
  ) {}

  get id(): string {
    return this.meta.id;
  }

  get contentPath(): string {
    return this.native.info().contentPath;
  }

  get ioMode(): "direct" | "buffered" {
    return this.native.info().ioMode;
  }

  finished(): PieceInfo[] {
    return this.native.finishedPieces().map(pieceInfoOf);
  }

  finishedCount(): number {
    return this.native.finishedCount();
  }

  piece(number: number): PieceInfo | undefined {
    const p = this.native.piece(number);
    return p ? pieceInfoOf(p) : undefined;
  }

  async writePiece(number: number, data: Buffer, createdAt: number): Promise<PieceInfo> {
    return pieceInfoOf(await this.native.writePiece(number, data, "", createdAt));
  }

  async fetchPiece(parent: ParentAddress, number: number, parentId: string, deadlines: PieceDeadlines, signal?: AbortSignal, expectedDigest?: string): Promise<PieceInfo> {
    return pieceInfoOf(await this.native.fetchPiece({ ...route(parent, this.tls), number, parentId, ...timeouts(deadlines), ...(expectedDigest ? { expectedDigest } : {}) }, signal));
  }

  race(timeoutMs: number, signal?: AbortSignal): PieceRace {
    const r = this.native.race(timeoutMs, signal);
    return {
      add: (parent, number, parentId, deadlines, expectedDigest) =>
        r.add({ ...route(parent, this.tls), number, parentId, ...timeouts(deadlines ?? { pieceMs: timeoutMs }), ...(expectedDigest ? { expectedDigest } : {}) }),
      started: r.started,
      done: r.done.then((w) => ({ index: w.index, info: pieceInfoOf(w.info) })),
      stalled: () => r.stalled(),
    };
  }

  readPiece(number: number): Promise<Buffer> {
    return this.native.readPiece(number);
  }

  async verifyPiece(number: number): Promise<PieceInfo> {
    return pieceInfoOf(await this.native.verifyPiece(number));
  }

  warm(): Promise<void> {
    return this.native.warm();
  }

  async writePlain(sink: PlainSink, except?: ReadonlySet<number>): Promise<void> {
    const wanted = Array.from({ length: this.meta.pieceCount }, (_, n) => n).filter((n) => !except?.has(n));
    let next = 0;
    let failed = false;
    const writer = async (): Promise<void> => {
      for (let i = next++; i < wanted.length && !failed; i = next++) {
        const n = wanted[i] as number;
        try {
          await sink(await this.native.readPiece(n), n * this.meta.pieceLength);
        } catch (e) {
          failed = true; // the other writers stop at their next piece
          throw e;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(PLAIN_WRITERS, wanted.length) }, writer));
  }

  teePlain(fd: number): () => number[] {
    return this.native.teePlain(fd);
  }

  async digest(algorithm: string): Promise<string> {
    if (NATIVE_DIGESTS.has(algorithm)) {
      const h = new DigestHasher(algorithm);
      for (let n = 0; n < this.meta.pieceCount; n++) h.update(await this.native.readPiece(n));
      return h.digest();
    }
    // sha512/md5/sha1 are accepted for compatibility with dfget's --digest; the addon does
    // not carry them, so node:crypto reads the finished file (or, sealed, its opened pieces).
    const h = createHash(algorithm);
    if (this.meta.sealed) {
      for (let n = 0; n < this.meta.pieceCount; n++) h.update(await this.native.readPiece(n));
    } else {
      for await (const chunk of createReadStream(this.contentPath, { highWaterMark: 4 << 20, end: Math.max(0, this.meta.contentLength - 1) })) h.update(chunk as Buffer);
    }
    return `${algorithm}:${h.digest("hex")}`;
  }

  async update(patch: Partial<TaskMetadata>): Promise<void> {
    Object.assign(this.meta, patch, { updatedAt: Date.now() });
    await writeMeta(this.dir, this.meta);
  }

  deleteNative(): void {
    this.native.delete();
  }
}

async function writeMeta(dir: string, meta: TaskMetadata): Promise<void> {
  const tmp = join(dir, `${META_FILE}.tmp-${process.pid}`);
  await writeFile(tmp, JSON.stringify(meta));
  await rename(tmp, join(dir, META_FILE));
}

export interface StorageOptions {
  /** Root for disk-tier tasks. */
  diskDir: string;
  /** Root for memory-tier tasks (a tmpfs directory); only a memory-tier daemon has one. */
  memoryDir?: string;
  /** Keep tasks from an earlier run (Dragonfly's storage.keep). */
  keep: boolean;
  /** storage.directIO: O_DIRECT for disk-tier writes where the filesystem takes it (auto), required (always), or never. */
  directIO: "auto" | "always" | "never";
  /** storage.warmLimit: finished O_DIRECT tasks up to this size are read back into the page cache (0 = never). */
  warmLimitBytes?: number;
  /** storage.server.tls: our identity for vortex over TCP under mutual TLS; unset = plaintext. */
  pieceTls?: PieceClientTls;
  /** storage.encryption: the keys of tasks sealed at rest (stored ones reopen with theirs). */
  atRest?: AtRest;
  log: Logger;
}

/** What a child presents to its parents for vortex over TLS (FetchPieceOptions.tls). */
export type PieceClientTls = NonNullable<FetchPieceOptions["tls"]>;

export type NewTask = Omit<TaskMetadata, "state" | "createdAt" | "updatedAt" | "finishedAt" | "failure" | "uploadedCount">;

export class Storage {
  private readonly tasks = new Map<string, LocalTask>();

  private constructor(private readonly opts: StorageOptions) {}

  static async open(opts: StorageOptions): Promise<Storage> {
    const s = new Storage(opts);
    for (const root of [opts.diskDir, ...(opts.memoryDir ? [opts.memoryDir] : [])]) {
      if (!opts.keep) await rm(root, { recursive: true, force: true });
      // Staged bytes outlive no process: the download that staged them is gone.
      await rm(join(root, STAGING_DIR), { recursive: true, force: true });
      await mkdir(root, { recursive: true });
    }
    if (opts.keep) await s.load();
    return s;
  }

  /** A task's native store, new or found on disk, with this daemon's tier and O_DIRECT choice (sealed with `key`, when given). */
  private openNative(root: string, id: string, layout: { contentLength: number; pieceLength: number }, tier: "disk" | "memory", key?: TenantKey): NativeTaskStore {
    // Memory-tier pieces live in the page cache anyway; "auto" leaves the choice to the store.
    const mode = tier === "disk" ? this.opts.directIO : "auto";
    const direct = mode === "always" ? { direct: true } : mode === "never" ? { direct: false } : {};
    const seal = key ? { seal: { key: key.key, keyVersion: key.version } } : {};
    return openTaskStore({ dataDir: root, taskId: id, contentLength: layout.contentLength, pieceLength: layout.pieceLength, tier: tier === "memory" ? "tmpfs" : "disk", ...direct, extraDigest: PIECE_DIGEST, ...seal });
  }

  /** The directory holding a tier's task directories. */
  rootFor(tier: "disk" | "memory"): string {
    if (tier === "disk") return this.opts.diskDir;
    if (!this.opts.memoryDir) throw new Error("memory-tier task on a daemon without a tmpfs root (storage.tier is disk)");
    return this.opts.memoryDir;
  }

  /** Where a tier stages the bytes of an origin that does not tell the length (never a task directory). */
  stagingDir(tier: "disk" | "memory"): string {
    return join(this.rootFor(tier), STAGING_DIR);
  }

  /** Reopens tasks from a previous run: finished ones serve again, partial ones resume. */
  private async load(): Promise<void> {
    for (const tier of this.opts.memoryDir ? (["disk", "memory"] as const) : (["disk"] as const)) {
      const root = this.rootFor(tier);
      for (const id of await readdir(root).catch(() => [] as string[])) {
        if (!isTaskId(id)) continue;
        const dir = join(root, id);
        try {
          const meta = JSON.parse(await readFile(join(dir, META_FILE), "utf8")) as TaskMetadata;
          if (meta.id !== id) throw new Error("metadata names another task");
          // A sealed task opens only with its key: without the manager's answer it is dropped
          // (it could neither be served nor written out).
          const key = meta.sealed ? await this.keyOf(meta.sealed) : undefined;
          const native = this.openNative(root, id, meta, tier, key);
          const task = new LocalTask(meta, native, dir, this.opts.pieceTls);
          // The record may predate the last pieces (crash): the piece store is the truth.
          const complete = native.finishedCount() === meta.pieceCount;
          if (!complete && native.finishedCount() === 0) {
            // An unfinished task without a single piece has nothing to resume from (a crash or
            // a failure before its first piece): it would only hold its preallocated bytes.
            this.opts.log.info({ taskId: id, state: meta.state }, "dropping unfinished task without pieces from storage");
            native.delete();
            await rm(dir, { recursive: true, force: true });
            continue;
          }
          if (meta.state === "succeeded" && !complete) meta.state = "running";
          if (meta.state === "running" && complete && !meta.digest) meta.state = "succeeded";
          this.tasks.set(id, task);
        } catch (e) {
          this.opts.log.warn({ taskId: id, err: errorMessage(e) }, "dropping unreadable task from storage");
          await rm(dir, { recursive: true, force: true });
        }
      }
    }
  }

  /** The key a new task of `application` is sealed with (storage.encryption); undefined: plaintext. */
  async sealingKeyFor(application: string | undefined): Promise<TenantKey | undefined> {
    return this.opts.atRest?.forNewTask(application);
  }

  private keyOf(sealed: NonNullable<TaskMetadata["sealed"]>): Promise<TenantKey> {
    if (!this.opts.atRest) return Promise.reject(new Error(`the task is sealed at rest (tenant ${sealed.tenant}, key version ${sealed.keyVersion}) and this daemon has no manager to get its key from`));
    return this.opts.atRest.keyOf(sealed);
  }

  get(taskId: string): TaskStore | undefined {
    return this.tasks.get(taskId);
  }

  list(): TaskStore[] {
    return [...this.tasks.values()];
  }

  /**
   * Opens a task for download: the existing store when the layout and the sealing match
   * (resume), else new; sealed under `key` when given (storage.encryption). A stored task
   * sealed under an older version of the same tenant's key stays as it is.
   */
  async open(t: NewTask, key?: TenantKey): Promise<TaskStore> {
    const existing = this.tasks.get(t.id);
    const sealingMatches = (m: TaskMetadata) => (m.sealed === undefined ? key === undefined : m.sealed.tenantId === key?.tenantId);
    if (existing && existing.meta.contentLength === t.contentLength && existing.meta.pieceLength === t.pieceLength && sealingMatches(existing.meta)) {
      // This run verifies its own requester's digest, not the one an earlier attempt asked for
      // (a wrong digest would otherwise fail every later download of the task).
      if (existing.meta.state !== "running" || existing.meta.digest !== t.digest) await existing.update({ state: "running", failure: undefined, digest: t.digest });
      return existing;
    }
    if (existing) await this.delete(t.id);
    const root = this.rootFor(t.tier);
    const dir = join(root, t.id);
    try {
      const native = this.openNative(root, t.id, t, t.tier, key);
      const now = Date.now();
      const meta: TaskMetadata = { ...t, sealed: key ? sealedWith(key) : undefined, state: "running", createdAt: now, updatedAt: now, uploadedCount: 0 };
      await writeMeta(dir, meta);
      const task = new LocalTask(meta, native, dir, this.opts.pieceTls);
      this.tasks.set(t.id, task);
      return task;
    } catch (e) {
      // A new task that could not be created (no space for its preallocation, its record or
      // its directory) leaves nothing behind: not a directory of empty files.
      try {
        deleteTaskStore(root, t.id);
      } catch {
        // The rm below removes whatever is left; the caller needs the first error.
      }
      await rm(dir, { recursive: true, force: true });
      throw e;
    }
  }

  /**
   * A task just finished: when it was written with O_DIRECT and fits storage.warmLimit, its
   * content is read back into the page cache in the background, for the children that ask for
   * it next (a task written through the page cache, tmpfs ones included, is there already).
   */
  warmForChildren(taskId: string): void {
    const task = this.tasks.get(taskId);
    if (!task || task.ioMode !== "direct" || task.meta.contentLength > (this.opts.warmLimitBytes ?? 0)) return;
    task.warm().catch((e: unknown) => this.opts.log.warn({ taskId, err: errorMessage(e) }, "reading a finished task into the page cache failed"));
  }

  async delete(taskId: string): Promise<void> {
    const t = this.tasks.get(taskId);
    this.tasks.delete(taskId);
    if (t) {
      t.deleteNative();
      await rm(join(this.rootFor(t.meta.tier), taskId), { recursive: true, force: true });
    } else {
      for (const tier of ["disk", "memory"] as const) deleteTaskStore(this.rootFor(tier), taskId);
    }
  }

  /** Bytes of task content we hold (GC counts only our own bytes). */
  usedBytes(): number {
    return this.list().reduce((s, t) => s + t.meta.contentLength, 0);
  }
}
