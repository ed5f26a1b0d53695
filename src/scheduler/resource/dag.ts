// Per-task DAG of peers: an edge parent → child means the child was told to download from the
// parent. An edge that would close a cycle is refused, so pieces can never be offered in a
// loop. Vertices are also kept in an array for O(1) random sampling of candidate parents.
export class DagError extends Error {
  override name = "DagError";
}

interface Vertex<T> {
  id: string;
  value: T;
  parents: Set<string>;
  children: Set<string>;
  index: number;
}

export class Dag<T> {
  private readonly vertices = new Map<string, Vertex<T>>();
  private readonly order: string[] = [];

  get size(): number {
    return this.vertices.size;
  }

  has(id: string): boolean {
    return this.vertices.has(id);
  }

  get(id: string): T | undefined {
    return this.vertices.get(id)?.value;
  }

  values(): T[] {
    return this.order.map((id) => this.vertices.get(id)?.value).filter((v): v is T => v !== undefined);
  }

  addVertex(id: string, value: T): void {
    if (this.vertices.has(id)) throw new DagError(`vertex ${id} already exists`);
    this.vertices.set(id, { id, value, parents: new Set(), children: new Set(), index: this.order.length });
    this.order.push(id);
  }

  /** Removes the vertex and every edge touching it; false when it was not there. */
  deleteVertex(id: string): boolean {
    const v = this.vertices.get(id);
    if (!v) return false;
    for (const p of v.parents) this.vertices.get(p)?.children.delete(id);
    for (const c of v.children) this.vertices.get(c)?.parents.delete(id);
    // Swap-remove from the sampling array.
    const lastId = this.order[this.order.length - 1];
    if (lastId !== undefined && lastId !== id) {
      const last = this.vertices.get(lastId);
      if (last) {
        this.order[v.index] = lastId;
        last.index = v.index;
      }
    }
    this.order.pop();
    this.vertices.delete(id);
    return true;
  }

  inDegree(id: string): number {
    const v = this.vertices.get(id);
    if (!v) throw new DagError(`vertex ${id} not found`);
    return v.parents.size;
  }

  outDegree(id: string): number {
    const v = this.vertices.get(id);
    if (!v) throw new DagError(`vertex ${id} not found`);
    return v.children.size;
  }

  parents(id: string): T[] {
    return [...(this.vertices.get(id)?.parents ?? [])].map((p) => this.vertices.get(p)?.value).filter((x): x is T => x !== undefined);
  }

  children(id: string): T[] {
    return [...(this.vertices.get(id)?.children ?? [])].map((c) => this.vertices.get(c)?.value).filter((x): x is T => x !== undefined);
  }

  /** True when `to` can reach `from` already, i.e. adding from → to would close a cycle. */
  private reaches(fromId: string, targetId: string): boolean {
    const seen = new Set<string>([fromId]);
    const stack = [fromId];
    while (stack.length > 0) {
      const cur = this.vertices.get(stack.pop() ?? "");
      if (!cur) continue;
      for (const c of cur.children) {
        if (c === targetId) return true;
        if (!seen.has(c)) {
          seen.add(c);
          stack.push(c);
        }
      }
    }
    return false;
  }

  canAddEdge(fromId: string, toId: string): boolean {
    if (fromId === toId) return false;
    const from = this.vertices.get(fromId);
    const to = this.vertices.get(toId);
    if (!from || !to) return false;
    if (from.children.has(toId)) return false;
    return !this.reaches(toId, fromId);
  }

  /** Adds parent → child; throws DagError on a missing vertex, a duplicate or a cycle. */
  addEdge(fromId: string, toId: string): void {
    if (fromId === toId) throw new DagError(`edge ${fromId} → ${toId} is a self loop`);
    const from = this.vertices.get(fromId);
    const to = this.vertices.get(toId);
    if (!from) throw new DagError(`vertex ${fromId} not found`);
    if (!to) throw new DagError(`vertex ${toId} not found`);
    if (from.children.has(toId)) throw new DagError(`edge ${fromId} → ${toId} already exists`);
    if (this.reaches(toId, fromId)) throw new DagError(`edge ${fromId} → ${toId} would create a cycle`);
    from.children.add(toId);
    to.parents.add(fromId);
  }

  deleteEdge(fromId: string, toId: string): void {
    this.vertices.get(fromId)?.children.delete(toId);
    this.vertices.get(toId)?.parents.delete(fromId);
  }

  /** Removes every edge into `id` and returns the former parents' ids. */
  deleteInEdges(id: string): string[] {
    const v = this.vertices.get(id);
    if (!v) return [];
    const former = [...v.parents];
    for (const p of former) this.vertices.get(p)?.children.delete(id);
    v.parents.clear();
    return former;
  }

  /** Removes every edge out of `id` and returns the former children's ids. */
  deleteOutEdges(id: string): string[] {
    const v = this.vertices.get(id);
    if (!v) return [];
    const former = [...v.children];
    for (const c of former) this.vertices.get(c)?.parents.delete(id);
    v.children.clear();
    return former;
  }

  /** Up to `n` distinct vertex values chosen uniformly at random (partial Fisher–Yates). */
  randomValues(n: number, rng: () => number = Math.random): T[] {
    const len = this.order.length;
    const k = Math.min(n, len);
    if (k === len) return this.values();
    const picked = new Map<number, number>();
    const out: T[] = [];
    for (let i = 0; i < k; i++) {
      const j = i + Math.floor(rng() * (len - i));
      const a = picked.get(j) ?? j;
      picked.set(j, picked.get(i) ?? i);
      const v = this.vertices.get(this.order[a] ?? "");
      if (v) out.push(v.value);
    }
    return out;
  }
}
