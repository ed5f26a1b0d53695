// Consistent hash ring with the exact placement of the Go library Dragonfly's scheduler uses
// for seed peers (stathat.com/c/consistent): 20 virtual points per member at
// crc32-IEEE(String(i) + member), a key maps to the first point strictly above crc32(key),
// wrapping to the first point. Same members ⇒ same choice as a Go scheduler, so a task sent to
// either lands on the same seed peer. Daemons reuse it to pick a scheduler per task.
import { crc32 } from "node:zlib";

export const DEFAULT_REPLICAS = 20;

export class HashRing {
  private readonly replicas: number;
  private readonly members = new Set<string>();
  private readonly circle = new Map<number, string>();
  private sorted: number[] = [];

  constructor(members: Iterable<string> = [], replicas = DEFAULT_REPLICAS) {
    if (!Number.isInteger(replicas) || replicas < 1) throw new RangeError(`replicas must be a positive integer, got ${replicas}`);
    this.replicas = replicas;
    for (const m of members) this.addMember(m);
    this.rebuild();
  }

  get size(): number {
    return this.members.size;
  }

  has(member: string): boolean {
    return this.members.has(member);
  }

  list(): string[] {
    return [...this.members].sort();
  }

  add(member: string): void {
    if (this.members.has(member)) return;
    this.addMember(member);
    this.rebuild();
  }

  remove(member: string): void {
    if (!this.members.delete(member)) return;
    for (let i = 0; i < this.replicas; i++) {
      const h = crc32(`${i}${member}`);
      // Only drop the point if it still belongs to this member (a later member may own it).
      if (this.circle.get(h) === member) this.circle.delete(h);
    }
    this.rebuild();
  }

  /** Replaces the membership in one step (e.g. after a health-check sweep). */
  set(members: Iterable<string>): void {
    this.members.clear();
    this.circle.clear();
    for (const m of members) this.addMember(m);
    this.rebuild();
  }

  /** The member responsible for `key`, or undefined when the ring is empty. */
  get(key: string): string | undefined {
    if (this.sorted.length === 0) return undefined;
    const h = crc32(key);
    // First point strictly greater than h (binary search), wrapping around.
    let lo = 0;
    let hi = this.sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.sorted[mid] ?? 0) > h) hi = mid;
      else lo = mid + 1;
    }
    const point = this.sorted[lo === this.sorted.length ? 0 : lo] ?? 0;
    return this.circle.get(point);
  }

  private addMember(member: string): void {
    this.members.add(member);
    // Later members overwrite colliding points, as the Go map assignment does.
    for (let i = 0; i < this.replicas; i++) this.circle.set(crc32(`${i}${member}`), member);
  }

  private rebuild(): void {
    this.sorted = [...this.circle.keys()].sort((a, b) => a - b);
  }
}
