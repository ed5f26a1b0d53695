// Parent top-up of a downloading peer (Scheduling.refreshCandidateParents): peers that started
// together all got the seed only; once another peer starts serving it is added as a parent.
import { describe, expect, it } from "vitest";
import { DefaultEvaluator } from "../../src/scheduler/scheduling/evaluator/default.js";
import { Scheduling } from "../../src/scheduler/scheduling/scheduling.js";
import { addHost, addPeer, addTask, newResource, RUNNING, seededRng, SUCCEEDED } from "./scheduler-fixtures.js";

const cfg = { retryLimit: 5, retryBackToSourceLimit: 4, retryInterval: 10, filterParentLimit: 15, candidateParentLimit: 3 };

function swarm() {
  const { resource } = newResource();
  const task = addTask(resource);
  addHost(resource, "seed-h", { type: 1 });
  const seed = addPeer(resource, "seed", task, "seed-h", SUCCEEDED);
  const a = addPeer(resource, "a", task, "ha", RUNNING);
  const b = addPeer(resource, "b", task, "hb", RUNNING);
  const scheduling = new Scheduling(resource, cfg, new DefaultEvaluator(), { rng: seededRng(7) });
  return { resource, task, seed, a, b, scheduling };
}

describe("refreshCandidateParents", () => {
  it("adds a peer once it serves, keeps existing parents first, and refuses the reverse edge", () => {
    const { resource, seed, a, b, scheduling } = swarm();
    resource.addParents(a, [seed]);
    // b has no parents and has not finished: it cannot serve yet.
    expect(scheduling.refreshCandidateParents(a)).toBeUndefined();
    expect(a.parents().map((p) => p.id)).toEqual(["seed"]);

    resource.addParents(b, [seed]);
    const uploadsBefore = b.host.concurrentUploadCount;
    expect(scheduling.refreshCandidateParents(a)?.map((p) => p.id)).toEqual(["seed", "b"]);
    expect(a.parents().map((p) => p.id).sort()).toEqual(["b", "seed"]);
    expect(b.host.concurrentUploadCount).toBe(uploadsBefore + 1);

    // Nothing new: no second response. b → a exists, so a → b would be a cycle.
    expect(scheduling.refreshCandidateParents(a)).toBeUndefined();
    expect(scheduling.refreshCandidateParents(b)).toBeUndefined();
    expect(b.parents().map((p) => p.id)).toEqual(["seed"]);
  });

  it("never offers blocked parents and stops at candidateParentLimit", () => {
    const { resource, task, seed, a, scheduling } = swarm();
    resource.addParents(a, [seed]);
    for (const id of ["p1", "p2", "p3", "p4"]) addPeer(resource, id, task, `h-${id}`, SUCCEEDED);
    a.blockParents.add("p1");
    const parents = scheduling.refreshCandidateParents(a)?.map((p) => p.id) ?? [];
    expect(parents).toHaveLength(cfg.candidateParentLimit);
    expect(parents[0]).toBe("seed");
    expect(parents).not.toContain("p1");
    // Full: no more top-ups.
    expect(scheduling.refreshCandidateParents(a)).toBeUndefined();
    expect(a.parents()).toHaveLength(cfg.candidateParentLimit);
  });

  it("offers peers downstream as mesh parents, outside the DAG, up to meshParentLimit", () => {
    const { resource, task, seed, a, b } = swarm();
    const scheduling = new Scheduling(resource, { ...cfg, meshParentLimit: 1 }, new DefaultEvaluator(), { rng: seededRng(7) });
    resource.addParents(a, [seed]);
    resource.addParents(b, [seed, a]);
    const c = addPeer(resource, "c", task, "hc", RUNNING);
    resource.addParents(c, [a]);
    // b and c are downstream of a: the DAG refuses them, one fits the mesh.
    const parents = scheduling.refreshCandidateParents(a)?.map((p) => p.id) ?? [];
    expect(parents[0]).toBe("seed");
    expect(parents).toHaveLength(2);
    expect(["b", "c"]).toContain(parents[1]);
    expect(a.parents().map((p) => p.id)).toEqual(["seed"]);
    expect([...a.meshParents.keys()]).toEqual([parents[1]]);
    expect(scheduling.refreshCandidateParents(a)).toBeUndefined();
  });

  it("fills the mesh with qualifying peers the full DAG has no room for, not only downstream ones", () => {
    const { resource, task, seed, a } = swarm();
    const scheduling = new Scheduling(resource, { ...cfg, meshParentLimit: 2 }, new DefaultEvaluator(), { rng: seededRng(7) });
    resource.addParents(a, [seed]);
    for (const id of ["p1", "p2", "p3", "p4", "p5"]) addPeer(resource, id, task, `h-${id}`, SUCCEEDED);
    const parents = scheduling.refreshCandidateParents(a)?.map((p) => p.id) ?? [];
    // Three in the DAG (the seed and two more), two of the other three in the mesh.
    expect(a.parents()).toHaveLength(cfg.candidateParentLimit);
    expect(a.meshParents.size).toBe(2);
    expect(parents).toHaveLength(5);
    expect(new Set(parents).size).toBe(5);
    for (const id of a.meshParents.keys()) expect(a.parents().map((p) => p.id)).not.toContain(id);
    expect(scheduling.refreshCandidateParents(a)).toBeUndefined();
  });
});
