// Block-aligned piece buffers for back-to-source through JS (object stores the native origin
// client cannot reach: gs, abs, https endpoints), used again instead of one fresh 4 MiB
// allocation per piece (the allocations and their collection were a large share of such a
// download's CPU). A buffer may be taken again once the store's writePiece has resolved: the
// native write holds it only until the write completes (it is dropped before the promise
// settles), and never keeps it.
import { allocPieceBuffer } from "../../native/index.js";

export class PieceBufferPool {
  private readonly free = new Map<number, Buffer[]>();
  private held = 0;

  /** @param maxBytes idle bytes kept at most; buffers given back past it are left to the GC. */
  constructor(private readonly maxBytes: number) {}

  take(length: number): Buffer {
    const buf = this.free.get(length)?.pop();
    if (!buf) return allocPieceBuffer(length);
    this.held -= length;
    return buf;
  }

  /** `buf` back for the next piece of its length; the caller must hold no other reference to it. */
  give(buf: Buffer): void {
    if (this.held + buf.length > this.maxBytes) return;
    let list = this.free.get(buf.length);
    if (!list) this.free.set(buf.length, (list = []));
    list.push(buf);
    this.held += buf.length;
  }
}
