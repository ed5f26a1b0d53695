import { describe, expect, it } from "vitest";
import { silentLogger } from "../../src/common/logger.js";
import { ResourceGc } from "../../src/scheduler/gc.js";
import { PeerEvent } from "../../src/scheduler/resource/peer.js";
import { addHost, addPeer, addTask, newResource, RUNNING, SUCCEEDED } from "./scheduler-fixtures.js";

const cfg = { pieceDownloadTimeout: 30 * 60_000, peerGCInterval: 10_000, peerTTL: 24 * 3_600_000, taskGCInterval: 30 * 60_000, hostGCInterval: 5 * 60_000, hostTTL: 3_600_000 };

describe("GC", () => {
  it("reclaims failed, left, stalled and expired peers, keeping healthy ones", () => {
    const { resource, clock } = newResource();
    const gc = new ResourceGc(resource, cfg, silentLogger());
    const task = addTask(resource);
    const failed = addPeer(resource, "failed", task, "h1", [PeerEvent.RegisterNormal, PeerEvent.DownloadFailed]);
    const stalled = addPeer(resource, "stalled", task, "h1", RUNNING);
    addPeer(resource, "done", task, "h2", SUCCEEDED);
    const fresh = addPeer(resource, "fresh", task, "h2", RUNNING);
    expect(gc.runPeerGc()).toEqual(["failed"]);
    expect(resource.peers.has(failed.id)).toBe(false);
    clock.advance(cfg.pieceDownloadTimeout + 1);
    fresh.pieceUpdatedAt = clock.t;
    expect(gc.runPeerGc()).toEqual(["stalled"]);
    expect(resource.peers.has(stalled.id)).toBe(false);
    clock.advance(cfg.peerTTL);
    expect(gc.runPeerGc().sort()).toEqual(["done", "fresh"]);
  });

  it("drops tasks without peers", () => {
    const { resource } = newResource();
    const gc = new ResourceGc(resource, cfg, silentLogger());
    const busy = addTask(resource, "busy");
    addTask(resource, "idle");
    addPeer(resource, "p", busy, "h1", RUNNING);
    expect(gc.runTaskGc()).toEqual(["idle"]);
    expect([...resource.tasks.keys()]).toEqual(["busy"]);
  });

  it("reclaims hosts that missed two announce intervals (hostTTL when unknown), with their peers", () => {
    const { resource, clock } = newResource();
    let removedCallbacks = 0;
    const gc = new ResourceGc(resource, cfg, silentLogger(), () => removedCallbacks++);
    addHost(resource, "every-minute", {}, 60_000);
    addHost(resource, "silent-type", {});
    const p = addPeer(resource, "p", addTask(resource), "every-minute", RUNNING);
    clock.advance(120_000);
    expect(gc.runHostGc()).toEqual([]);
    clock.advance(1);
    expect(gc.runHostGc()).toEqual(["every-minute"]);
    expect(resource.peers.has(p.id)).toBe(false);
    expect(removedCallbacks).toBe(1);
    clock.advance(cfg.hostTTL);
    expect(gc.runHostGc()).toEqual(["silent-type"]);
  });

  it("a re-announce keeps the host alive", () => {
    const { resource, clock } = newResource();
    const gc = new ResourceGc(resource, cfg, silentLogger());
    const h = addHost(resource, "h", {}, 60_000);
    clock.advance(100_000);
    resource.announceHost(h.message, 60_000);
    clock.advance(100_000);
    expect(gc.runHostGc()).toEqual([]);
  });
});
