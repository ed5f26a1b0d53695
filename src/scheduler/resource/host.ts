// A host is one machine running a dfdaemon, as it announced itself. Besides the announced
// record it carries the scheduler's own upload accounting, which the filter and evaluators
// read: how many children it serves now, how much it has uploaded and how often that failed.
import type { Host as HostMessage } from "../../gen/common/v2/common.js";
import type { Peer } from "./peer.js";

export const HOST_TYPE_NORMAL = 0;
export const HOST_TYPE_SUPER = 1;
const HOST_TYPE_NAMES = ["normal", "super", "strong", "weak"];

export function hostTypeName(type: number): string {
  return HOST_TYPE_NAMES[type] ?? "normal";
}

const UPLOAD_WINDOW_MS = 60_000;

export interface HostLimits {
  seedPeer: number;
  peer: number;
}

/** Measured upload speed of a parent host, from the costs its children report. */
export class UploadSpeed {
  /** Exponentially weighted bytes per second; 0 until the first sample. */
  bytesPerSecond = 0;
  samples = 0;

  observe(bytes: number, seconds: number): void {
    if (!(seconds > 0) || !(bytes > 0)) return;
    const rate = bytes / seconds;
    this.bytesPerSecond = this.samples === 0 ? rate : 0.8 * this.bytesPerSecond + 0.2 * rate;
    this.samples++;
  }
}

export class Host {
  readonly id: string;
  message: HostMessage;
  /** Announce interval in ms (undefined when the host never said). */
  announceInterval: number | undefined;
  readonly createdAt: number;
  updatedAt: number;
  readonly peers = new Map<string, Peer>();
  /** Children currently assigned to download from this host, across all tasks. */
  concurrentUploadCount = 0;
  uploadCount = 0;
  uploadFailedCount = 0;
  uploadContentLength = 0;
  readonly uploadSpeed = new UploadSpeed();
  concurrentUploadLimit: number;
  /** Bytes uploaded in the current and the previous 60 s window (load for the evaluators). */
  private uploadWindow = { start: 0, bytes: 0, previous: 0 };

  constructor(message: HostMessage, now: number, limits: HostLimits, announceInterval?: number) {
    this.id = message.id;
    this.message = message;
    this.announceInterval = announceInterval;
    this.createdAt = now;
    this.updatedAt = now;
    this.concurrentUploadLimit = message.type === HOST_TYPE_NORMAL ? limits.peer : limits.seedPeer;
  }

  get type(): number {
    return this.message.type;
  }

  get isSeed(): boolean {
    return this.message.type !== HOST_TYPE_NORMAL;
  }

  get typeName(): string {
    return hostTypeName(this.message.type);
  }

  get ip(): string {
    return this.message.ip;
  }

  get hostname(): string {
    return this.message.hostname;
  }

  get disableShared(): boolean {
    return this.message.disableShared;
  }

  /** Transmit capacity in bits per second (0 when unknown). */
  get maxTxBandwidth(): number {
    return this.message.network?.maxTxBandwidth ?? 0;
  }

  /** Current transmit rate in bits per second, as last announced. */
  get txBandwidth(): number {
    return this.message.network?.txBandwidth ?? 0;
  }

  get idc(): string {
    return this.message.network?.idc ?? "";
  }

  get location(): string {
    return this.message.network?.location ?? "";
  }

  get freeUploadCount(): number {
    return this.concurrentUploadLimit - this.concurrentUploadCount;
  }

  /** A child reported a piece fetched from this host. */
  recordUpload(bytes: number, seconds: number, now: number): void {
    this.uploadContentLength += bytes;
    this.rollWindow(now);
    this.uploadWindow.bytes += bytes;
    // Per-piece rate × children at the time ≈ what the host can push in total.
    this.uploadSpeed.observe(bytes * Math.max(1, this.concurrentUploadCount), seconds);
  }

  /** Bytes uploaded in roughly the last 60 s. */
  recentUploadBytes(now: number): number {
    this.rollWindow(now);
    const frac = Math.min(1, (now - this.uploadWindow.start) / UPLOAD_WINDOW_MS);
    return this.uploadWindow.bytes + this.uploadWindow.previous * (1 - frac);
  }

  private rollWindow(now: number): void {
    const w = this.uploadWindow;
    if (now - w.start < UPLOAD_WINDOW_MS) return;
    w.previous = now - w.start < 2 * UPLOAD_WINDOW_MS ? w.bytes : 0;
    w.bytes = 0;
    w.start = now;
  }

  update(message: HostMessage, now: number, limits: HostLimits, announceInterval?: number): void {
    this.message = message;
    if (announceInterval !== undefined) this.announceInterval = announceInterval;
    this.updatedAt = now;
    this.concurrentUploadLimit = message.type === HOST_TYPE_NORMAL ? limits.peer : limits.seedPeer;
  }
}
