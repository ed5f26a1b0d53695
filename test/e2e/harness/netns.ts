// Emulated hosts for the swarm harness: one network namespace per host, each with a veth pair
// into a bridge that lives in a namespace of its own, addresses in 10.203.0.0/16 that exist
// only inside these namespaces, and `tc` limits on both ends of every link. Every namespace is
// named `dfsw-<pid>-<host>`, so leftovers of a crashed run (whose pid is gone) are found and
// removed by the next one.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";

export const NS_PREFIX = "dfsw-";
export const SUBNET = "10.203.0.0/16";

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: string[], opts: { input?: string; allowFail?: boolean } = {}): RunResult {
  const r = spawnSync(cmd, args, { encoding: "utf8", input: opts.input, timeout: 60_000 });
  const res = { status: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
  if (!opts.allowFail && r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: exit ${r.status}: ${res.stderr.trim() || r.error?.message || ""}`);
  return res;
}

/** Whether this machine can build the emulated network; `reason` says why not. */
export function netnsSupport(): { ok: true } | { ok: false; reason: string } {
  if (process.platform !== "linux") return { ok: false, reason: "network namespaces need Linux" };
  if (typeof process.getuid === "function" && process.getuid() !== 0) return { ok: false, reason: "network namespaces need root" };
  if (!["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].some(existsSync)) return { ok: false, reason: "`ip` (iproute2) is not installed" };
  const probe = `${NS_PREFIX}probe-${process.pid}`;
  const r = run("ip", ["netns", "add", probe], { allowFail: true });
  if (r.status !== 0) return { ok: false, reason: `cannot create a network namespace: ${r.stderr.trim()}` };
  run("ip", ["netns", "del", probe], { allowFail: true });
  return { ok: true };
}

export function nsExec(ns: string, cmd: string, args: string[], opts: { allowFail?: boolean } = {}): RunResult {
  return run("ip", ["netns", "exec", ns, cmd, ...args], opts);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Kills every process inside `ns`, then deletes it. */
export function destroyNamespace(ns: string): void {
  for (let i = 0; i < 3; i++) {
    const pids = run("ip", ["netns", "pids", ns], { allowFail: true }).stdout.split(/\s+/).filter(Boolean).map(Number);
    if (pids.length === 0) break;
    for (const p of pids) {
      try {
        process.kill(p, "SIGKILL");
      } catch {
        // gone already
      }
    }
    spawnSync("sleep", ["0.2"]);
  }
  run("ip", ["netns", "del", ns], { allowFail: true });
}

export function listNamespaces(): string[] {
  return run("ip", ["netns", "list"], { allowFail: true })
    .stdout.split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter((n) => n.startsWith(NS_PREFIX));
}

/** Removes namespaces (and their processes) left by harness runs whose process is gone. */
export function cleanupStaleNamespaces(): string[] {
  const removed: string[] = [];
  for (const ns of listNamespaces()) {
    const owner = Number(/^dfsw-(\d+)-/.exec(ns)?.[1]);
    if (Number.isInteger(owner) && owner !== process.pid && !pidAlive(owner)) {
      destroyNamespace(ns);
      removed.push(ns);
    }
  }
  return removed;
}

/**
 * How each end of a link queues what exceeds its rate.
 * - "sparse-first" (the default): packets under 256 bytes (TCP ACKs, piece requests, gRPC control
 *   frames) go ahead of bulk data, which waits in a tail-drop queue of 100 ms. A real host
 *   serves such sparse flows first (fq_codel, fq), and a switch port at real link speed
 *   queues for microseconds. In namespaces the round trip is about 20 µs, so with one shared
 *   queue a host that uploads and downloads at once, as every peer of a swarm does, gets the
 *   ACKs of its uploads stuck behind tens of milliseconds of its downloads. `ss` showed 10–45
 *   ms round trips on piece connections. BBR sizes its window from the 20 µs minimum, so those
 *   uploads stall. Measured with 16 peers on freshly started daemons: about 17.0 s with one
 *   shared queue, about 16.1 s with this one. Curl from the origin took 179.5 s with either,
 *   since its hosts only download.
 * - "fifo": that one shared queue (tbf), for comparison.
 */
export type LinkQueue = "sparse-first" | "fifo";

export interface LinkShape {
  /** Rate of each direction of the link, in Mbit/s. */
  mbit: number;
  /** One-way delay added with netem when the kernel has it (ms, 0 = none). */
  delayMs: number;
  queue: LinkQueue;
}

/** netem as qdisc `handle` under class `parent`; false, with a warning, where the kernel lacks it. */
function delay(ns: string, dev: string, parent: string, handle: string, ms: number, warn: (m: string) => void): boolean {
  const r = nsExec(ns, "tc", ["qdisc", "add", "dev", dev, "parent", parent, "handle", handle, "netem", "delay", `${ms}ms`], { allowFail: true });
  if (r.status !== 0) warn(`delay not applied on ${ns}/${dev}: netem is not available in this kernel (${r.stderr.trim()})`);
  return r.status === 0;
}

/**
 * htb at the link rate with two classes: packets under 256 bytes first, bulk data after them
 * in a queue as deep as the tbf one (100 ms plus the burst). Returns why it could not be set up.
 */
function sparseFirst(ns: string, dev: string, link: LinkShape, warn: (m: string) => void): string | undefined {
  const rate = `${link.mbit}mbit`;
  // htb's quantum defaults to rate / 10, over its own maximum at these rates.
  const limits = ["burst", "256k", "cburst", "256k", "quantum", "60000"];
  const steps = [
    ["qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb", "default", "20"],
    ["class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb", "rate", rate, "ceil", rate, ...limits],
    ["class", "add", "dev", dev, "parent", "1:1", "classid", "1:10", "htb", "rate", `${Math.max(1, Math.round(link.mbit / 50))}mbit`, "ceil", rate, "prio", "0", ...limits],
    ["class", "add", "dev", dev, "parent", "1:1", "classid", "1:20", "htb", "rate", rate, "ceil", rate, "prio", "1", ...limits],
    // IP total length under 256 bytes: the sparse class.
    ["filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1", "u32", "match", "u16", "0x0000", "0xff00", "at", "2", "flowid", "1:10"],
  ];
  for (const step of steps) {
    const r = nsExec(ns, "tc", step, { allowFail: true });
    if (r.status !== 0) return r.stderr.trim() || `tc ${step.join(" ")} failed`;
  }
  const bulkLimit = `${Math.round((link.mbit * 1e6) / 8 / 10) + 256 * 1024}b`;
  for (const [cls, limit] of [["1:10", "256kb"], ["1:20", bulkLimit]] as const) {
    const handle = `${cls.slice(2)}:`;
    if (link.delayMs > 0 && delay(ns, dev, cls, handle, link.delayMs, warn)) continue;
    nsExec(ns, "tc", ["qdisc", "add", "dev", dev, "parent", cls, "handle", handle, "bfifo", "limit", limit]);
  }
  return undefined;
}

/**
 * Shapes `dev` in `ns` to the link's rate. A burst of 256 KiB is large enough for veth's GSO
 * packets (64 KiB) and small next to a second of traffic, so the long-run rate is the
 * configured one. Returns the queue it set up: "fifo" when the kernel lacks htb or u32.
 */
function shape(ns: string, dev: string, link: LinkShape, warn: (m: string) => void): LinkQueue {
  if (link.queue === "sparse-first") {
    const failed = sparseFirst(ns, dev, link, warn);
    if (!failed) return "sparse-first";
    warn(`sparse-first queueing not set up on ${ns}/${dev}, one shared queue instead: ${failed}`);
    nsExec(ns, "tc", ["qdisc", "del", "dev", dev, "root"], { allowFail: true });
  }
  nsExec(ns, "tc", ["qdisc", "replace", "dev", dev, "root", "handle", "1:", "tbf", "rate", `${link.mbit}mbit`, "burst", "256kb", "latency", "100ms"]);
  if (link.delayMs > 0) delay(ns, dev, "1:1", "10:", link.delayMs, warn);
  return "fifo";
}

export interface NetHost {
  name: string;
  ns: string;
  ip: string;
  /** Interface name of this host's link on the bridge side. */
  bridgePort: string;
}

/** The bridge namespace plus hosts attached to it. */
export class EmulatedNetwork {
  readonly prefix: string;
  readonly bridgeNs: string;
  readonly hosts = new Map<string, NetHost>();
  /** The queue the links have: the one asked for, or "fifo" where "sparse-first" could not be set up. */
  queue: LinkQueue;
  private nextIndex = 2;

  constructor(
    private readonly link: LinkShape,
    private readonly warn: (m: string) => void,
    tag = "",
  ) {
    this.queue = link.queue;
    this.prefix = `${NS_PREFIX}${process.pid}-${tag}`;
    this.bridgeNs = `${this.prefix}br`;
    run("ip", ["netns", "add", this.bridgeNs]);
    nsExec(this.bridgeNs, "ip", ["link", "set", "lo", "up"]);
    nsExec(this.bridgeNs, "ip", ["link", "add", "br0", "type", "bridge"]);
    nsExec(this.bridgeNs, "ip", ["link", "set", "br0", "up"]);
  }

  addHost(name: string): NetHost {
    const i = this.nextIndex++;
    if (i > 250) throw new Error("the emulated network holds at most 249 hosts");
    const ns = `${this.prefix}${name}`;
    const ip = `10.203.0.${i}`;
    const bridgePort = `h${i}`;
    run("ip", ["netns", "add", ns]);
    run("ip", ["link", "add", "name", "eth0", "netns", ns, "type", "veth", "peer", "name", bridgePort, "netns", this.bridgeNs]);
    nsExec(ns, "ip", ["link", "set", "lo", "up"]);
    nsExec(ns, "ip", ["addr", "add", `${ip}/16`, "dev", "eth0"]);
    nsExec(ns, "ip", ["link", "set", "eth0", "up"]);
    nsExec(this.bridgeNs, "ip", ["link", "set", bridgePort, "master", "br0"]);
    nsExec(this.bridgeNs, "ip", ["link", "set", bridgePort, "up"]);
    // Upload side in the host, download side on the bridge: each direction at the link rate.
    const queues = [shape(ns, "eth0", this.link, this.warn), shape(this.bridgeNs, bridgePort, this.link, this.warn)];
    if (queues.includes("fifo")) this.queue = "fifo";
    const host = { name, ns, ip, bridgePort };
    this.hosts.set(name, host);
    return host;
  }

  /** The TCP congestion control the host's connections use (the namespace's default). */
  congestionControl(host: NetHost): string {
    return nsExec(host.ns, "sysctl", ["-n", "net.ipv4.tcp_congestion_control"]).stdout.trim();
  }

  /** Bytes received and sent on the host's link (kernel counters, headers included). */
  counters(host: NetHost): { rx: number; tx: number } {
    const out = run("ip", ["-n", host.ns, "-s", "-j", "link", "show", "dev", "eth0"]).stdout;
    const j = JSON.parse(out) as Array<{ stats64?: { rx: { bytes: number }; tx: { bytes: number } } }>;
    const s = j[0]?.stats64;
    return { rx: s?.rx.bytes ?? 0, tx: s?.tx.bytes ?? 0 };
  }

  /**
   * Drops `percent` of the host's packets at random (iptables statistic match, since netem may
   * be missing): on what it sends, or on both directions.
   */
  setLoss(host: NetHost, percent: number, direction: "egress" | "both" = "both"): void {
    for (const chain of ["INPUT", "OUTPUT"]) nsExec(host.ns, "iptables", ["-F", chain], { allowFail: true });
    if (percent <= 0) return;
    const p = String(percent / 100);
    const chains = direction === "both" ? ["INPUT", "OUTPUT"] : ["OUTPUT"];
    for (const chain of chains) nsExec(host.ns, "iptables", ["-A", chain, "-m", "statistic", "--mode", "random", "--probability", p, "-j", "DROP"]);
  }

  destroy(): void {
    for (const h of this.hosts.values()) destroyNamespace(h.ns);
    destroyNamespace(this.bridgeNs);
    this.hosts.clear();
  }
}
