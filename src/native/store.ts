// Piece stores and piece transfer. Buffers passed in are read by the addon (on its own
// threads) until the returned promise settles, so callers must not modify them meanwhile;
// Buffers returned are owned by the caller.
import { binding, type Binding } from "./binding.js";
import { abortedError, nativeAsync } from "./errors.js";

export type StoreTier = "disk" | "tmpfs";
export type SyncPolicy = "auto" | "always" | "never";
export type ExtraDigest = "crc32c" | "sha256" | "blake3";
export type ServePath = "sendfile" | "splice" | "buffered";

export interface OpenTaskStoreOptions {
  /** Root directory; the task lives in `<dataDir>/<taskId>/` (files `content` and `pieces`). */
  dataDir: string;
  taskId: string;
  contentLength: number;
  pieceLength: number;
  /** "tmpfs" expects `dataDir` on a tmpfs (e.g. under /dev/shm); I/O is then buffered. */
  tier?: StoreTier;
  /** Unset: O_DIRECT when the filesystem accepts it; true: require it; false: never. */
  direct?: boolean;
  /** When a piece counts as written. auto (default): durable against power loss (O_DIRECT
   * writes carry RWF_DSYNC, page-cache writes share a group fdatasync); always: as auto plus an
   * fdatasync at every commit; never: no syncs (survives kill -9, not power loss). */
  sync?: SyncPolicy;
  /** Digest computed next to the CRC-32 wire digest for every piece. */
  extraDigest?: ExtraDigest;
  /**
   * Seal the pieces at rest with AES-256-GCM under this key: ciphertext at the pieces'
   * offsets, each tag in its piece's record, digests still of the plain bytes. A store found
   * sealed opens only with its own key and version (DF_AUTH otherwise); a plaintext one found
   * on disk is refused (DF_INVALID_ARGUMENT). Unset: a plaintext store, or the instance this
   * process already holds for the task, sealed or not. Reads return plain bytes, opened once;
   * a piece whose tag fails is unmarked and the read fails with DF_AUTH.
   */
  seal?: { key: Buffer; keyVersion: number };
}

export interface TaskStoreInfo {
  taskId: string;
  dir: string;
  /** The preallocated content file: hard-link it for output once every piece is finished. */
  contentPath: string;
  contentLength: number;
  pieceLength: number;
  pieceCount: number;
  tier: StoreTier;
  /** The I/O mode actually in use. */
  ioMode: "direct" | "buffered";
  /** "io_uring", or "threads" where io_uring is refused (e.g. a container's seccomp profile). */
  ioEngine: "io_uring" | "threads";
  sync: SyncPolicy;
  extraDigest?: ExtraDigest;
  /** The key version a sealed store's pieces are sealed under; absent for a plaintext store. */
  sealedKeyVersion?: number;
}

export interface NativePieceInfo {
  number: number;
  offset: number;
  length: number;
  /** Dragonfly's wire digest, `crc32:<decimal>` (CRC-32/IEEE). */
  digest: string;
  extraDigest?: string;
  parentId: string;
  createdAtMs: number;
  finishedAtMs: number;
  /** How this process wrote the piece; absent for pieces found on disk at open. */
  ioMode?: "direct" | "buffered";
}

/** Vortex transport of a piece fetch (Dragonfly's `download.protocol`). */
export type PieceProtocol = "tcp" | "quic";

export interface FetchPieceOptions {
  /** Parent's piece server, `host:port` (`[v6]:port` for IPv6): its TCP port, or its QUIC port with protocol "quic". */
  addr: string;
  /** Default "tcp". Over QUIC each piece is a stream on a pooled connection to the parent. */
  protocol?: PieceProtocol;
  number: number;
  /** Digest announced for the piece (checked in addition to the one the parent sends). */
  expectedDigest?: string;
  /** Parent peer id, recorded as the piece's parent. */
  parentId?: string;
  connectTimeoutMs?: number;
  /** Bound on the whole exchange; default 360 s like Dragonfly. */
  pieceTimeoutMs?: number;
  /**
   * Longest wait for the parent to start answering (its upload queue included); unset or 0:
   * only `pieceTimeoutMs`. Missed: DF_STALLED.
   */
  firstByteTimeoutMs?: number;
  /** Longest silence once the parent started answering; unset or 0: only `pieceTimeoutMs`. Missed: DF_STALLED. */
  stallTimeoutMs?: number;
  /**
   * Vortex over TCP under mutual TLS with this parent (the cluster CA and our identity; parsed
   * once per identity). A handshake refused either way: DF_AUTH, unless `allowPlaintext`: then
   * that parent is asked in plaintext, now and from then on. Ignored over QUIC.
   */
  tls?: TlsPem & { allowPlaintext?: boolean };
}

/** PEM texts of one side of a mutual-TLS piece connection. */
export interface TlsPem {
  /** The cluster CA, which signed the other side's certificate. */
  caPem: string;
  certPem: string;
  keyPem: string;
}

/** One race among parents (`NativeTaskStore.race`). */
export interface NativePieceRace {
  /** Asks one more parent for one of its pieces; ignored once a parent started sending. */
  add(options: FetchPieceOptions): void;
  /** The winner's index (in the order added) once its parent starts sending; -1 if none does. */
  readonly started: Promise<number>;
  /** The winner and its landed, verified piece; rejects when every candidate refused or failed. */
  readonly done: Promise<{ index: number; info: NativePieceInfo }>;
  /** Candidates (indices) whose parent missed its first-byte deadline so far (DF_STALLED). */
  stalled(): number[];
}

/** A content version, as the native origin client takes it (see daemon/backend/pin.ts). */
export interface NativeOriginPin {
  /** Strong ETag, quotes included. */
  etag?: string | undefined;
  lastModified?: string | undefined;
}

export interface FetchFromOriginOptions {
  /** The origin's resolved address `ip:port` (`[v6]:port`): the caller resolves DNS and applies its SSRF policy. */
  addr: string;
  /** Host header value (`name[:port]`). */
  host: string;
  /** Request target (path and query, percent-encoded), starting with `/`. */
  path: string;
  /** Extra request headers; Host, Range, Connection, framing and precondition headers are refused. */
  headers?: Record<string, string>;
  /**
   * The content version the piece must be of: sent as If-Match (ETag) or If-Unmodified-Since
   * (Last-Modified) and compared with the answer's validators and length. Another version
   * rejects with DF_ORIGIN_CHANGED (carrying the answer's status and headers), storing nothing.
   */
  pin?: NativeOriginPin;
  number: number;
  connectTimeoutMs?: number;
  /** Bound on each wait for the origin; default 60 s. */
  readTimeoutMs?: number;
}

export interface OriginStats {
  /** Connections opened to origins. */
  connects: number;
  /** Pieces sent over a kept-alive connection. */
  reuses: number;
  pieces: number;
  bytes: number;
}

/** Closes the idle piece connections (TCP, TLS, QUIC) to a parent address `ip:port`; returns how many. */
export function closeIdlePieceConnections(addr: string): number {
  return binding.closeIdlePieceConnections(addr);
}

/** Counters of the process-wide native origin client (connection pool and pieces fetched). */
export function originStats(): OriginStats {
  return binding.originStats();
}

function toInfo(p: Binding.PieceInfo): NativePieceInfo {
  const out: NativePieceInfo = {
    number: p.number,
    offset: p.offset,
    length: p.length,
    digest: p.digest,
    parentId: p.parentId,
    createdAtMs: p.createdAtMs,
    finishedAtMs: p.finishedAtMs,
  };
  if (p.extraDigest) out.extraDigest = p.extraDigest;
  if (p.ioMode) out.ioMode = p.ioMode as "direct" | "buffered";
  return out;
}

/**
 * Runs a cancellable addon call: the AbortSignal flips a native cancel token, which drops the
 * operation's socket, so an abort really stops the transfer rather than just ignoring it.
 */
async function withSignal<T>(signal: AbortSignal | undefined, run: (token: Binding.CancelToken | undefined) => Promise<T>): Promise<T> {
  if (!signal) return nativeAsync(run(undefined));
  if (signal.aborted) throw abortedError(signal);
  const token = new binding.CancelToken();
  const onAbort = (): void => token.cancel();
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    return await nativeAsync(run(token));
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/** One task's piece store. Cheap to hold; stores of the same task share one native instance. */
export class NativeTaskStore {
  /** @internal */
  constructor(private readonly inner: Binding.TaskStore) {}

  info(): TaskStoreInfo {
    const i = this.inner.info();
    const out: TaskStoreInfo = {
      taskId: i.taskId,
      dir: i.dir,
      contentPath: i.contentPath,
      contentLength: i.contentLength,
      pieceLength: i.pieceLength,
      pieceCount: i.pieceCount,
      tier: i.tier as StoreTier,
      ioMode: i.ioMode as "direct" | "buffered",
      ioEngine: i.ioEngine as "io_uring" | "threads",
      sync: i.sync as SyncPolicy,
    };
    if (i.extraDigest) out.extraDigest = i.extraDigest as ExtraDigest;
    if (i.sealedKeyVersion !== undefined && i.sealedKeyVersion !== null) out.sealedKeyVersion = i.sealedKeyVersion;
    return out;
  }

  /** Writes piece `number` (digest computed on the way), resolves once durable and finished. */
  async writePiece(number: number, data: Buffer, parentId?: string, createdAtMs?: number): Promise<NativePieceInfo> {
    return toInfo(await nativeAsync(this.inner.writePiece(number, data, parentId, createdAtMs)));
  }

  /** Reads a finished piece (plain bytes); DF_PIECE_NOT_FINISHED if it never finished, DF_AUTH for a sealed piece that fails its tag (then unmarked). */
  readPiece(number: number): Promise<Buffer> {
    return nativeAsync(this.inner.readPiece(number));
  }

  /** Re-hashes a finished piece from disk; on DF_DIGEST_MISMATCH the piece is unmarked. */
  async verifyPiece(number: number): Promise<NativePieceInfo> {
    return toInfo(await nativeAsync(this.inner.verifyPiece(number)));
  }

  /**
   * A sealed store only: every piece landing from now on is also written in plain into the
   * file open at `fd` (duplicated; the caller keeps and closes its own), at its offset, before
   * it is sealed. Returns what detaches it, which tells the pieces written there.
   */
  teePlain(fd: number): () => number[] {
    const id = this.inner.teePlain(fd);
    return () => this.inner.untee(id);
  }

  /** Reads an O_DIRECT-written task into the page cache, resolving once it is cached (a no-op for a buffered one). */
  warm(): Promise<void> {
    return nativeAsync(this.inner.warm());
  }

  /** Downloads a piece from a parent into this store, verified before it is marked finished. */
  async fetchPiece(options: FetchPieceOptions, signal?: AbortSignal): Promise<NativePieceInfo> {
    return toInfo(await withSignal(signal, (token) => this.inner.fetchPiece(options, token)));
  }

  /**
   * A race among parents for a piece each: every candidate added is asked at once on a
   * connection of its own, the first parent to start sending wins, the other requests are
   * withdrawn. Candidates may be added until a parent started.
   */
  race(timeoutMs: number, signal?: AbortSignal): NativePieceRace {
    const race = this.inner.race(timeoutMs);
    const started = race.started();
    const done = withSignal(signal, (token) => race.run(token)).then((r) => ({ index: r.index, info: toInfo(r.info) }));
    return { add: (options) => race.add(options), started, done, stalled: () => race.stalled() };
  }

  /**
   * Fetches a piece from a plain-HTTP origin with a ranged GET straight into this store (no
   * bytes through JS). Rejects with DF_BACKEND carrying `statusCode` and `headers` when the
   * origin answers anything but the piece; DF_IO/DF_TIMEOUT for network trouble; DF_PROTOCOL
   * for a malformed or mismatching response.
   */
  async fetchFromOrigin(options: FetchFromOriginOptions, signal?: AbortSignal): Promise<NativePieceInfo> {
    return toInfo(await withSignal(signal, (token) => this.inner.fetchFromOrigin(options, token)));
  }

  piece(number: number): NativePieceInfo | undefined {
    const p = this.inner.piece(number);
    return p ? toInfo(p) : undefined;
  }

  finishedPieces(): NativePieceInfo[] {
    return this.inner.finishedPieces().map(toInfo);
  }

  finishedCount(): number {
    return this.inner.finishedCount();
  }

  /**
   * Gives up this handle (the task stays on disk): the store's files close once no other
   * handle and no operation in flight holds it, rather than whenever V8 collects this object.
   * Later calls on this handle fail with DF_NOT_FOUND; info() still answers.
   */
  close(): void {
    this.inner.close();
  }

  /** Removes the task's directory and closes this handle; other handles then fail with DF_NOT_FOUND. */
  delete(): void {
    this.inner.delete();
  }
}

/**
 * A zero-filled Buffer aligned for O_DIRECT. Pieces written from such buffers go to disk with
 * no copy (others are copied into an aligned buffer first), so callers that fill piece
 * buffers themselves should allocate them here.
 */
export function allocPieceBuffer(length: number): Buffer {
  return binding.allocPieceBuffer(length);
}

/** Creates or opens a task's store (throws DF_INVALID_ARGUMENT if it exists with another layout). */
export function openTaskStore(options: OpenTaskStoreOptions): NativeTaskStore {
  return new NativeTaskStore(new binding.TaskStore(options));
}

/** Deletes `<dataDir>/<taskId>/` whether or not a store is open on it. */
export function deleteTaskStore(dataDir: string, taskId: string): void {
  binding.deleteTaskStore(dataDir, taskId);
}

export interface PieceServerOptions {
  host: string;
  /** 0 = an ephemeral port (read it back from `port`). */
  port: number;
  dataDir: string;
  /** Searched after `dataDir` (the tmpfs tier root). */
  tmpfsDir?: string;
  /** Upload cap for the whole server; 0/unset = unlimited. */
  rateLimitBytesPerSec?: number;
  /** Pieces sent at once; 0/unset = unlimited. See `uploadQueue` for what happens beyond. */
  uploadSlots?: number;
  /** Requests that may wait for a slot in arrival order; beyond slots + queue they are refused at once (DF_BUSY at our clients). */
  uploadQueue?: number;
  /** SO_SNDBUF of accepted connections; 0/unset = the kernel's autotuning. */
  sendBufferBytes?: number;
  /** Unset = `defaultPieceServePath()`, the path measured fastest. */
  servePath?: ServePath;
  idleTimeoutMs?: number;
  readTimeoutMs?: number;
  writeTimeoutMs?: number;
  /** Also answer vortex over QUIC on this UDP port of `host` (0 = a free port); unset or negative = TCP only. */
  quicPort?: number;
  /**
   * Vortex over TCP under mutual TLS: client certificates required and verified against
   * `caPem`. mode "required" (default) refuses plaintext requests with an Error frame saying
   * so; "optional" serves plaintext clients (Dragonfly's) too. Unset = plaintext.
   */
  tls?: TlsPem & { mode?: "required" | "optional" };
}

export interface PieceServerStats {
  bytesServed: number;
  piecesServed: number;
  connectionsAccepted: number;
  activeConnections: number;
  errorsSent: number;
  uploadsDropped: number;
  /** What went over QUIC; its pieces and bytes are in the totals too. */
  quicConnectionsAccepted: number;
  quicPiecesServed: number;
  quicBytesServed: number;
  /** TCP connections that completed a TLS handshake. */
  tlsConnectionsAccepted: number;
}

export interface PieceUpload {
  taskId: string;
  number: number;
  length: number;
}

export interface NativePieceServer {
  readonly port: number;
  /** The QUIC port; undefined when the server answers over TCP only. */
  readonly quicPort: number | undefined;
  readonly servePath: ServePath;
  close(): Promise<void>;
  stats(): PieceServerStats;
  /** Pieces served since the last call (bounded; overflow counted in `uploadsDropped`). */
  drainUploads(): PieceUpload[];
}

/** Starts a vortex piece server on its own threads (tokio), serving finished pieces. */
export async function startPieceServer(options: PieceServerOptions): Promise<NativePieceServer> {
  const h = await nativeAsync(binding.startPieceServer(options));
  return {
    port: h.port,
    quicPort: h.quicPort ?? undefined,
    servePath: h.servePath as ServePath,
    close: () => nativeAsync(h.close()),
    stats: () => h.stats(),
    drainUploads: () => h.drainUploads(),
  };
}

/** Body path used when a server is started without `servePath` (for `damselfly doctor`). */
export function defaultPieceServePath(): ServePath {
  return binding.defaultPieceServePath() as ServePath;
}

export type PieceServer = NativePieceServer;
