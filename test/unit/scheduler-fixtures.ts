// Builders for scheduler unit tests: a Resource with an injected clock, hosts, tasks, peers.
import { Host as HostMessage, Priority, TaskType } from "../../src/gen/common/v2/common.js";
import { PeerEvent, type Peer } from "../../src/scheduler/resource/peer.js";
import { Resource } from "../../src/scheduler/resource/resource.js";
import type { Task } from "../../src/scheduler/resource/task.js";
import { mulberry32 } from "../../bench/lib/prng.js";

export const MiB = 1024 * 1024;

export class FakeClock {
  t = 1_000_000;
  now = (): number => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

export function newResource(clock = new FakeClock()): { resource: Resource; clock: FakeClock } {
  return { resource: new Resource({ seedPeer: 2000, peer: 200 }, clock.now), clock };
}

export function addHost(resource: Resource, id: string, opts: { type?: number; maxTx?: number; tx?: number; idc?: string; location?: string; disableShared?: boolean } = {}, interval?: number) {
  return resource.announceHost(
    HostMessage.fromPartial({
      id,
      type: opts.type ?? 0,
      hostname: id,
      ip: "10.0.0.1",
      port: 4000,
      downloadPort: 4000,
      disableShared: opts.disableShared ?? false,
      network: { maxTxBandwidth: opts.maxTx ?? 1e9, txBandwidth: opts.tx ?? 0, idc: opts.idc, location: opts.location },
    }),
    interval,
  );
}

export function addTask(resource: Resource, id = "t".repeat(64), contentLength = 40 * MiB, pieceLength = 4 * MiB): Task {
  return resource.loadOrCreateTask({
    id,
    type: TaskType.STANDARD,
    url: "https://example.com/f",
    filteredQueryParams: [],
    requestHeader: {},
    contentLength,
    pieceLength,
    totalPieceCount: Math.ceil(contentLength / pieceLength),
    backToSourceLimit: 200,
  }).task;
}

export function addPeer(resource: Resource, id: string, task: Task, hostId: string, events: PeerEvent[] = []): Peer {
  const host = resource.hosts.get(hostId) ?? addHost(resource, hostId);
  const { peer } = resource.loadOrCreatePeer({ id, priority: Priority.LEVEL0 }, task, host);
  for (const e of events) peer.fsm.fire(e);
  return peer;
}

export const RUNNING: PeerEvent[] = [PeerEvent.RegisterNormal, PeerEvent.Download];
export const SUCCEEDED: PeerEvent[] = [PeerEvent.RegisterNormal, PeerEvent.Download, PeerEvent.DownloadSucceeded];
export const BACK_TO_SOURCE: PeerEvent[] = [PeerEvent.RegisterNormal, PeerEvent.DownloadBackToSource];

/** Deterministic PRNG (mulberry32) for reproducible sampling: the benchmarks' one. */
export const seededRng = mulberry32;
