// Which scheduler clusters suit a peer, scored as Dragonfly's manager/searcher does:
//   0.3 · CIDR match + 0.3 · hostname regex match + 0.25 · IDC match (exact or any "|" element)
//   + 0.14 · location prefix match (elements separated by "|", up to 5) + 0.01 · default cluster.
// Clusters are returned best first; ties keep their order (stable sort).
import { BlockList, isIP } from "node:net";

export interface ClusterScopes {
  idc?: string;
  location?: string;
  cidrs?: string[];
  hostnames?: string[];
}

export interface SearchableCluster {
  id: number;
  scopes: ClusterScopes;
  is_default: boolean;
}

export interface SearchConditions {
  ip: string;
  hostname: string;
  idc?: string | undefined;
  location?: string | undefined;
}

const SEPARATOR = "|";
const MAX_ELEMENTS = 5;

function unmap(ip: string): string {
  return /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)?.[1] ?? ip;
}

export function cidrScore(ip: string, cidrs: readonly string[] = []): number {
  const addr = unmap(ip);
  const family = isIP(addr);
  if (!family) return 0;
  for (const cidr of cidrs) {
    const [base = "", bits] = cidr.split("/");
    const baseFamily = isIP(base);
    const prefix = Number(bits);
    if (!baseFamily || bits === undefined || !Number.isInteger(prefix)) continue;
    const list = new BlockList();
    try {
      list.addSubnet(base, prefix, baseFamily === 4 ? "ipv4" : "ipv6");
    } catch {
      continue;
    }
    if (list.check(addr, family === 4 ? "ipv4" : "ipv6")) return 1;
  }
  return 0;
}

export function hostnameScore(hostname: string, patterns: readonly string[] = []): number {
  if (!hostname) return 0;
  for (const p of patterns) {
    let re: RegExp;
    try {
      re = new RegExp(p);
    } catch {
      continue;
    }
    if (re.test(hostname)) return 1;
  }
  return 0;
}

export function idcScore(dst: string | undefined, src: string | undefined): number {
  if (!dst || !src) return 0;
  const d = dst.toLowerCase();
  if (d === src.toLowerCase()) return 1;
  return src.split(SEPARATOR).some((e) => e.toLowerCase() === d) ? 1 : 0;
}

export function locationScore(dst: string | undefined, src: string | undefined): number {
  if (!dst || !src) return 0;
  if (dst.toLowerCase() === src.toLowerCase()) return 1;
  const a = dst.split(SEPARATOR);
  const b = src.split(SEPARATOR);
  const n = Math.min(a.length, b.length, MAX_ELEMENTS);
  let score = 0;
  for (let i = 0; i < n; i++) {
    if ((a[i] ?? "").toLowerCase() !== (b[i] ?? "").toLowerCase()) break;
    score++;
  }
  return score / MAX_ELEMENTS;
}

export function evaluate(c: SearchConditions, cluster: SearchableCluster): number {
  const s = cluster.scopes;
  return (
    0.3 * cidrScore(c.ip, s.cidrs) +
    0.3 * hostnameScore(c.hostname, s.hostnames) +
    0.25 * idcScore(c.idc, s.idc) +
    0.14 * locationScore(c.location, s.location) +
    0.01 * (cluster.is_default ? 1 : 0)
  );
}

/** Clusters ordered best first for the peer described by `conditions`. */
export function rankClusters<T extends SearchableCluster>(clusters: readonly T[], conditions: SearchConditions): T[] {
  return clusters
    .map((cluster, i) => ({ cluster, i, score: evaluate(conditions, cluster) }))
    .sort((a, b) => b.score - a.score || a.i - b.i)
    .map((x) => x.cluster);
}
