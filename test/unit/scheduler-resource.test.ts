import { describe, expect, it } from "vitest";
import { SizeScope } from "../../src/gen/common/v2/common.js";
import { Dag, DagError } from "../../src/scheduler/resource/dag.js";
import { FsmError } from "../../src/scheduler/resource/fsm.js";
import { PeerEvent, PeerState } from "../../src/scheduler/resource/peer.js";
import { RollingWindow } from "../../src/scheduler/resource/stats.js";
import { TaskEvent, TaskState } from "../../src/scheduler/resource/task.js";
import { addHost, addPeer, addTask, BACK_TO_SOURCE, MiB, newResource, RUNNING, seededRng, SUCCEEDED } from "./scheduler-fixtures.js";

describe("peer FSM", () => {
  it("follows Dragonfly's transitions", () => {
    const { resource } = newResource();
    const task = addTask(resource);
    const p = addPeer(resource, "p", task, "h1");
    expect(p.state).toBe(PeerState.Pending);
    p.fsm.fire(PeerEvent.RegisterTiny);
    expect(p.state).toBe(PeerState.ReceivedTiny);
    p.fsm.fire(PeerEvent.Download);
    p.fsm.fire(PeerEvent.DownloadBackToSource);
    expect(p.state).toBe(PeerState.BackToSource);
    p.fsm.fire(PeerEvent.DownloadSucceeded);
    p.fsm.fire(PeerEvent.DownloadFailed);
    p.fsm.fire(PeerEvent.Leave);
    expect(p.state).toBe(PeerState.Leave);
  });

  it("refuses events from the wrong state with a message naming both", () => {
    const { resource } = newResource();
    const p = addPeer(resource, "p", addTask(resource), "h1");
    expect(() => p.fsm.fire(PeerEvent.Download)).toThrow(new FsmError("event Download inappropriate in current state Pending"));
    p.fsm.fire(PeerEvent.RegisterEmpty);
    expect(() => p.fsm.fire(PeerEvent.RegisterNormal)).toThrow(FsmError);
    p.fsm.fire(PeerEvent.Leave);
    expect(p.fsm.can(PeerEvent.Leave)).toBe(false);
    expect(p.fsm.can(PeerEvent.DownloadFailed)).toBe(false);
  });
});

describe("task FSM and size scope", () => {
  it("runs, succeeds, fails only from running, leaves", () => {
    const { resource } = newResource();
    const t = addTask(resource);
    expect(t.fsm.current).toBe(TaskState.Pending);
    expect(t.fsm.can(TaskEvent.DownloadFailed)).toBe(false);
    t.fsm.fire(TaskEvent.Download);
    t.fsm.fire(TaskEvent.DownloadSucceeded);
    expect(() => t.fsm.fire(TaskEvent.DownloadFailed)).toThrow(FsmError);
    t.fsm.fire(TaskEvent.Download);
    t.fsm.fire(TaskEvent.DownloadFailed);
    t.fsm.fire(TaskEvent.Leave);
    expect(t.fsm.current).toBe(TaskState.Leave);
  });

  it("classifies sizes like Dragonfly", () => {
    const { resource } = newResource();
    expect(addTask(resource, "a", 0).sizeScope()).toBe(SizeScope.EMPTY);
    expect(addTask(resource, "b", 128).sizeScope()).toBe(SizeScope.TINY);
    expect(addTask(resource, "c", 129).sizeScope()).toBe(SizeScope.SMALL);
    expect(addTask(resource, "d", 4 * MiB + 1).sizeScope()).toBe(SizeScope.NORMAL);
    expect(addTask(resource, "e", -1).sizeScope()).toBe(SizeScope.UNKNOW);
  });
});

describe("DAG", () => {
  it("rejects self loops, duplicates, missing vertices and cycles", () => {
    const d = new Dag<string>();
    for (const v of ["a", "b", "c"]) d.addVertex(v, v);
    d.addEdge("a", "b");
    d.addEdge("b", "c");
    expect(() => d.addEdge("c", "a")).toThrow(new DagError("edge c → a would create a cycle"));
    expect(d.canAddEdge("c", "a")).toBe(false);
    expect(() => d.addEdge("a", "a")).toThrow(/self loop/);
    expect(() => d.addEdge("a", "b")).toThrow(/already exists/);
    expect(() => d.addEdge("a", "zz")).toThrow(/not found/);
    expect(() => d.addVertex("a", "a")).toThrow(/already exists/);
    expect(d.canAddEdge("a", "c")).toBe(true);
    expect(d.inDegree("c")).toBe(1);
    expect(d.outDegree("a")).toBe(1);
  });

  it("deleting a vertex removes its edges and keeps sampling consistent", () => {
    const d = new Dag<string>();
    for (const v of ["a", "b", "c", "d"]) d.addVertex(v, v);
    d.addEdge("a", "b");
    d.addEdge("b", "c");
    expect(d.deleteVertex("b")).toBe(true);
    expect(d.deleteVertex("b")).toBe(false);
    expect(d.outDegree("a")).toBe(0);
    expect(d.inDegree("c")).toBe(0);
    expect(d.values().sort()).toEqual(["a", "c", "d"]);
    const sample = d.randomValues(2, seededRng(1));
    expect(new Set(sample).size).toBe(2);
    expect(d.randomValues(10).sort()).toEqual(["a", "c", "d"]);
  });

  it("samples uniformly without repeats", () => {
    const d = new Dag<number>();
    for (let i = 0; i < 50; i++) d.addVertex(`v${i}`, i);
    const counts = new Array<number>(50).fill(0);
    const rng = seededRng(7);
    for (let r = 0; r < 2000; r++) {
      const s = d.randomValues(15, rng);
      expect(new Set(s).size).toBe(15);
      for (const v of s) counts[v] = (counts[v] ?? 0) + 1;
    }
    // Expected 600 per vertex; every vertex is drawn within a wide band.
    for (const c of counts) expect(c).toBeGreaterThan(450);
  });

  it("thousands of interleaved joins, edge changes and leaves keep it acyclic and counts consistent", () => {
    const { resource } = newResource();
    const task = addTask(resource);
    for (let h = 0; h < 50; h++) addHost(resource, `h${h}`);
    const rng = seededRng(42);
    const live: string[] = [];
    let next = 0;
    for (let step = 0; step < 20_000; step++) {
      const r = rng();
      if (r < 0.4 || live.length < 5) {
        const id = `p${next++}`;
        addPeer(resource, id, task, `h${Math.floor(rng() * 50)}`, RUNNING);
        live.push(id);
      } else if (r < 0.8) {
        const child = resource.peers.get(live[Math.floor(rng() * live.length)] ?? "");
        if (!child) continue;
        resource.deleteParents(child);
        const parents = task.dag.randomValues(3, rng).filter((p) => p !== child);
        resource.addParents(child, parents);
      } else {
        const idx = Math.floor(rng() * live.length);
        const peer = resource.peers.get(live[idx] ?? "");
        if (peer) resource.deletePeer(peer);
        live.splice(idx, 1);
      }
    }
    expect(next).toBeGreaterThan(5000);
    // Every edge joins live peers; upload counts equal out-edges per host; no cycle.
    const perHost = new Map<string, number>();
    for (const p of task.dag.values()) {
      expect(resource.peers.get(p.id)).toBe(p);
      perHost.set(p.host.id, (perHost.get(p.host.id) ?? 0) + task.dag.outDegree(p.id));
      for (const c of p.children()) expect(task.dag.has(c.id)).toBe(true);
    }
    for (const h of resource.hosts.values()) expect(h.concurrentUploadCount).toBe(perHost.get(h.id) ?? 0);
    const state = new Map<string, number>();
    const visit = (id: string): void => {
      state.set(id, 1);
      for (const c of task.dag.children(id)) {
        expect(state.get(c.id)).not.toBe(1);
        if (!state.has(c.id)) visit(c.id);
      }
      state.set(id, 2);
    };
    for (const p of task.dag.values()) if (!state.has(p.id)) visit(p.id);
    expect(task.dag.size).toBe(live.length);
  });
});

describe("RollingWindow", () => {
  it("keeps the newest samples and computes stats excluding the last", () => {
    const w = new RollingWindow(3);
    w.add(1);
    w.add(2);
    w.add(3);
    expect(w.isFull).toBe(true);
    w.add(10);
    expect(w.values()).toEqual([2, 3, 10]);
    expect(w.last).toBe(10);
    expect(w.meanExcludingLast()).toBe(2.5);
    expect(w.stdDevExcludingLast()).toBe(0.5);
    expect(() => new RollingWindow(1)).toThrow(RangeError);
  });
});

describe("resource bookkeeping", () => {
  it("edges count as uploads on the parent host and are released when peers leave", () => {
    const { resource } = newResource();
    const task = addTask(resource);
    const parent = addPeer(resource, "parent", task, "h1", SUCCEEDED);
    const a = addPeer(resource, "a", task, "h2", RUNNING);
    const b = addPeer(resource, "b", task, "h3", BACK_TO_SOURCE);
    expect(resource.addParents(a, [parent, b]).map((p) => p.id)).toEqual(["parent", "b"]);
    expect(resource.hosts.get("h1")?.concurrentUploadCount).toBe(1);
    expect(resource.addParents(b, [a])).toEqual([]); // b → a exists: a → b would be a cycle
    resource.deletePeer(parent);
    expect(resource.hosts.get("h1")?.concurrentUploadCount).toBe(0);
    expect(a.parents().map((p) => p.id)).toEqual(["b"]);
    resource.deleteHost(resource.hosts.get("h3") ?? addHost(resource, "x"));
    expect(resource.peers.has("b")).toBe(false);
    expect(a.parents()).toEqual([]);
    resource.deleteTask(task);
    expect(resource.tasks.size).toBe(0);
    expect(resource.peers.size).toBe(0);
  });
});
