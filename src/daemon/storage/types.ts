// What the daemon knows about a task it stores: the piece store (native) holds bytes and piece
// records; this metadata (JSON beside it) holds what Dragonfly's task record holds — where the
// content came from and how the download ended.
import type { OriginPin } from "../backend/pin.js";
import type { SealedWith } from "./at-rest.js";

export type LocalTaskState = "running" | "succeeded" | "failed";

export interface TaskMetadata {
  id: string;
  url: string;
  tag?: string | undefined;
  application?: string | undefined;
  filteredQueryParams: string[];
  /** Request headers minus credentials (never persisted). */
  requestHeader: Record<string, string>;
  contentLength: number;
  pieceLength: number;
  pieceCount: number;
  /** Headers of the origin's answer the task is pinned to (peers read the pin from them: StatLocalTask). */
  responseHeader: Record<string, string>;
  /**
   * The version of the origin's content the pieces are of (backend/pin.ts): sent as a
   * precondition with every request to the origin. Absent in records written before pinning.
   */
  pin?: OriginPin | undefined;
  /** Whole-content digest `alg:hex` when the requester gave one. */
  digest?: string | undefined;
  state: LocalTaskState;
  failure?: string | undefined;
  tier: "disk" | "memory";
  /** Set when the pieces are sealed at rest (storage.encryption): whose key, which version. */
  sealed?: SealedWith | undefined;
  createdAt: number;
  updatedAt: number;
  finishedAt?: number | undefined;
  uploadedCount: number;
}

export interface PieceInfo {
  number: number;
  offset: number;
  length: number;
  /** Dragonfly's wire digest, `crc32:<decimal>`. */
  digest: string;
  /**
   * The piece's collision-resistant digest (`blake3:<hex>`), computed with the CRC; absent for
   * stores created without one. A back-to-source peer vouches for its pieces with it.
   */
  extraDigest?: string;
  /** Peer id of the parent it came from; empty when from the origin. */
  parentId: string;
  createdAt: number;
  finishedAt: number;
}

/**
 * How long one piece request may take. A parent that misses `firstByteMs` or `stallMs` fails
 * the request with DF_STALLED (a stopped parent: its kernel keeps the connection open and
 * nothing answers); unset, only `pieceMs` (download.pieceTimeout) bounds the request.
 */
export interface PieceDeadlines {
  pieceMs: number;
  /** From the request to the parent's first reply byte (its upload queue included). */
  firstByteMs?: number;
  /** Longest silence once the parent started answering. */
  stallMs?: number;
}

/** See TaskStore.race. */
export interface PieceRace {
  /** Asks `parent` for piece `number` too; ignored once a parent started sending. */
  add(parent: ParentAddress, number: number, parentId: string, deadlines?: PieceDeadlines, expectedDigest?: string): void;
  /** The winner's index (in the order added) once its parent starts sending; -1 if none does. */
  readonly started: Promise<number>;
  /** The winner and its landed piece; rejects when every candidate refused or failed. */
  readonly done: Promise<{ index: number; info: PieceInfo }>;
  /** Candidates (indices) whose parent missed its first-byte deadline, so far. */
  stalled(): number[];
}

export interface ParentAddress {
  ip: string;
  /** Vortex port of the parent's piece server: its TCP port, or its QUIC port with protocol "quic". */
  port: number;
  /** Default "tcp". */
  protocol?: "tcp" | "quic";
}

/** Where plain bytes go: `data` at byte `position` of an output. */
export type PlainSink = (data: Buffer, position: number) => Promise<void>;

/** One task's bytes and records; every byte moves through the native piece store. */
export interface TaskStore {
  readonly id: string;
  readonly meta: TaskMetadata;
  /** The task's file; holds ciphertext when the task is sealed at rest (`meta.sealed`). */
  readonly contentPath: string;
  /** How the store writes pieces: O_DIRECT ("direct") or through the page cache (storage.directIO). */
  readonly ioMode: "direct" | "buffered";
  finished(): PieceInfo[];
  /** How many pieces are finished: finished().length without listing them. */
  finishedCount(): number;
  piece(number: number): PieceInfo | undefined;
  /** Writes a whole piece (from the origin) and records it once durable. */
  writePiece(number: number, data: Buffer, createdAt: number, signal?: AbortSignal): Promise<PieceInfo>;
  /**
   * Fetches a piece from a parent's piece server straight into the task file, verified against
   * the CRC in the parent's frame and, when given, `expectedDigest` (the origin's, as the
   * scheduler vouches for it: piece/vouched.ts); a mismatch is DF_DIGEST_MISMATCH.
   */
  fetchPiece(parent: ParentAddress, number: number, parentId: string, deadlines: PieceDeadlines, signal?: AbortSignal, expectedDigest?: string): Promise<PieceInfo>;
  /**
   * A race among parents for a piece each: every candidate is asked at once, the first parent
   * to start sending wins and its piece lands verified; the other requests are withdrawn.
   */
  race(timeoutMs: number, signal?: AbortSignal): PieceRace;
  /** A finished piece's plain bytes (a sealed one opened; DF_AUTH, and the piece dropped, if it fails its tag). */
  readPiece(number: number): Promise<Buffer>;
  /** Writes the plain content through `sink`, piece by piece, but for the pieces in `except` (the output of a task sealed at rest). */
  writePlain(sink: PlainSink, except?: ReadonlySet<number>): Promise<void>;
  /**
   * A task sealed at rest only: every piece landing from now on is also written in plain into
   * the file open at `fd`, at its offset, from the bytes in hand before they are sealed.
   * Returns what detaches it, which tells the pieces written.
   */
  teePlain(fd: number): () => number[];
  /**
   * Re-reads finished piece `number` and checks it against the digests recorded when it landed;
   * rejects with DF_DIGEST_MISMATCH, the piece then no longer finished (storage/scrub.ts).
   */
  verifyPiece(number: number): Promise<PieceInfo>;
  /** Digest `alg:hex` of the whole content (sha256, sha512, blake3, crc32). */
  digest(algorithm: string): Promise<string>;
  update(patch: Partial<TaskMetadata>): Promise<void>;
}
