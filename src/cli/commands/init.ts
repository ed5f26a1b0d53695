// `damselfly init containerd|crio|podman|docker [--dry-run]`: points a container runtime at the
// local dfdaemon proxy the way Dragonfly's dfinit does:
// - containerd: registry `config_path` in config.toml (added when missing) and `hosts.toml`
//   files under it, per registry (with X-Dragonfly-Registry naming the upstream) and, unless
//   --no-proxy-all-registries, a catch-all `_default`;
// - CRI-O / Podman: registries.conf with the proxy as each registry's mirror;
// - Docker: `proxies` in daemon.json (HTTPS goes through CONNECT interception: trust the
//   proxy's CA).
// Existing files are edited, not replaced, where the runtime allows (containerd's config.toml
// keeps its comments). --dry-run prints a unified diff and writes nothing.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Command } from "commander";
import { parse as parseToml } from "smol-toml";
import { errorMessage } from "../../common/errors.js";

export const RUNTIMES = ["containerd", "crio", "podman", "docker"] as const;
export type Runtime = (typeof RUNTIMES)[number];

const DEFAULT_PROXY_ADDR = "http://127.0.0.1:4001";
const DEFAULT_CONFIG_PATH: Record<Runtime, string> = {
  containerd: "/etc/containerd/config.toml",
  crio: "/etc/containers/registries.conf",
  podman: "/etc/containers/registries.conf",
  docker: "/etc/docker/daemon.json",
};
const DEFAULT_HOSTS_DIR = "/etc/containerd/certs.d";
const DEFAULT_UNQUALIFIED = ["registry.fedoraproject.org", "registry.access.redhat.com", "docker.io"];

export interface InitOptions {
  runtime: Runtime;
  /** The runtime's main config file (defaults per runtime, as dfinit). */
  configPath?: string | undefined;
  /** Where the proxy listens, as the runtime should reach it. */
  proxyAddr?: string | undefined;
  /** containerd: `host=server` (e.g. `docker.io=https://registry-1.docker.io`); CRI-O/Podman: `prefix=location`. */
  registries?: string[] | undefined;
  /** containerd: also route every other registry through the proxy (`_default`). */
  proxyAllRegistries?: boolean | undefined;
  /** containerd: the hosts directory to configure when config.toml names none. */
  hostsDir?: string | undefined;
  /** containerd: skip_verify for the proxy host entry. */
  skipVerify?: boolean | undefined;
  /** CRI-O/Podman: unqualified-search-registries. */
  unqualifiedSearchRegistries?: string[] | undefined;
  dryRun?: boolean | undefined;
}

export interface FileChange {
  path: string;
  before: string | undefined;
  after: string;
}

export interface InitResult {
  changes: FileChange[];
  notes: string[];
}

export class InitError extends Error {
  override name = "InitError";
}

const tomlString = (s: string) => JSON.stringify(s);
const tomlArray = (xs: readonly string[]) => `[${xs.map(tomlString).join(", ")}]`;

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new InitError(`cannot read ${path}: ${errorMessage(e)}`);
  }
}

function parseProxyAddr(addr: string): URL {
  let u: URL;
  try {
    u = new URL(addr);
  } catch {
    throw new InitError(`--proxy-addr: "${addr}" is not a URL (expected e.g. ${DEFAULT_PROXY_ADDR})`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new InitError(`--proxy-addr: expected an http(s) URL, got ${u.protocol}`);
  return u;
}

function parseRegistries(specs: readonly string[], what: string): Array<{ key: string; value: string }> {
  return specs.map((spec) => {
    const i = spec.indexOf("=");
    const key = i > 0 ? spec.slice(0, i).trim() : "";
    const value = i > 0 ? spec.slice(i + 1).trim() : "";
    if (!key || !value || /[\s/\\]|\.\./.test(key)) throw new InitError(`--registry: "${spec}" is not ${what}`);
    return { key, value };
  });
}

function hostsToml(server: string | undefined, proxy: string, skipVerify: boolean | undefined, registryHeader: string | undefined): string {
  const lines: string[] = [];
  if (server) lines.push(`server = ${tomlString(server)}`, "");
  lines.push(`[host.${tomlString(proxy)}]`, `  capabilities = ${tomlArray(["pull", "resolve"])}`);
  if (skipVerify !== undefined) lines.push(`  skip_verify = ${skipVerify}`);
  if (registryHeader) lines.push(`  [host.${tomlString(proxy)}.header]`, `    X-Dragonfly-Registry = ${tomlString(registryHeader)}`);
  return `${lines.join("\n")}\n`;
}

/** containerd: make sure config.toml names a hosts directory; returns it and the edited text. */
function ensureConfigPath(text: string, path: string, hostsDir: string): { dir: string; after: string } {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text);
  } catch (e) {
    throw new InitError(`${path}: not valid TOML: ${errorMessage(e)}`);
  }
  const version = typeof doc.version === "number" || typeof doc.version === "bigint" ? Number(doc.version) : 2;
  const pluginId = version >= 3 ? "io.containerd.cri.v1.images" : "io.containerd.grpc.v1.cri";
  const plugins = doc.plugins as Record<string, Record<string, Record<string, unknown> | undefined> | undefined> | undefined;
  const current = plugins?.[pluginId]?.registry?.config_path;
  if (typeof current === "string" && current !== "") return { dir: current.split(":")[0] ?? current, after: text };

  const header = `[plugins.${tomlString(pluginId)}.registry]`;
  const headerRe = new RegExp(`^\\s*\\[\\s*plugins\\s*\\.\\s*["']${pluginId.replaceAll(".", "\\.")}["']\\s*\\.\\s*registry\\s*\\]\\s*(#.*)?$`);
  const lines = text.split("\n");
  const at = lines.findIndex((l) => headerRe.test(l));
  let after: string;
  if (at >= 0) {
    // Replace an empty config_path in the table, or add one right under its header.
    let end = lines.findIndex((l, i) => i > at && /^\s*\[/.test(l));
    if (end < 0) end = lines.length;
    const existing = lines.findIndex((l, i) => i > at && i < end && /^\s*config_path\s*=/.test(l));
    const line = `  config_path = ${tomlString(hostsDir)}`;
    if (existing >= 0) lines[existing] = line;
    else lines.splice(at + 1, 0, line);
    after = lines.join("\n");
  } else {
    const base = text === "" ? "version = 2\n" : text.endsWith("\n") ? text : `${text}\n`;
    after = `${base}\n${header}\n  config_path = ${tomlString(hostsDir)}\n`;
  }
  let check: unknown;
  try {
    check = (parseToml(after) as { plugins?: Record<string, { registry?: { config_path?: unknown } }> }).plugins?.[pluginId]?.registry?.config_path;
  } catch (e) {
    throw new InitError(`${path}: cannot add plugins."${pluginId}".registry.config_path automatically (${errorMessage(e)}); set it to ${hostsDir} by hand`);
  }
  if (check !== hostsDir) throw new InitError(`${path}: cannot add plugins."${pluginId}".registry.config_path automatically; set it to ${hostsDir} by hand`);
  return { dir: hostsDir, after };
}

async function containerd(o: InitOptions, proxy: string): Promise<InitResult> {
  const path = o.configPath ?? DEFAULT_CONFIG_PATH.containerd;
  const before = await readOptional(path);
  const { dir, after } = ensureConfigPath(before ?? "", path, o.hostsDir ?? DEFAULT_HOSTS_DIR);
  const changes: FileChange[] = [];
  const notes: string[] = [];
  if (after !== before) {
    changes.push({ path, before, after });
    notes.push(`restart containerd to load ${path}`);
  }
  for (const r of parseRegistries(o.registries ?? [], "host=server (e.g. docker.io=https://registry-1.docker.io)")) {
    if (!/^https?:\/\//.test(r.value)) throw new InitError(`--registry ${r.key}=${r.value}: the server must be an http(s) URL`);
    const file = join(dir, r.key, "hosts.toml");
    changes.push({ path: file, before: await readOptional(file), after: hostsToml(r.value, proxy, o.skipVerify, r.value) });
  }
  if (o.proxyAllRegistries ?? true) {
    const file = join(dir, "_default", "hosts.toml");
    changes.push({ path: file, before: await readOptional(file), after: hostsToml(undefined, proxy, o.skipVerify, undefined) });
  }
  notes.push(`ctr pulls through the proxy with: ctr images pull --hosts-dir ${dir} <image>`);
  return { changes: changes.filter((c) => c.before !== c.after), notes };
}

async function registriesConf(o: InitOptions, proxy: URL): Promise<InitResult> {
  const path = o.configPath ?? DEFAULT_CONFIG_PATH[o.runtime];
  const location = `${proxy.hostname.includes(":") ? `[${proxy.hostname}]` : proxy.hostname}:${proxy.port || (proxy.protocol === "https:" ? 443 : 80)}`;
  const registries = parseRegistries(o.registries && o.registries.length > 0 ? o.registries : ["docker.io=docker.io"], "prefix=location (e.g. docker.io=docker.io)");
  const lines = [`unqualified-search-registries = ${tomlArray(o.unqualifiedSearchRegistries ?? DEFAULT_UNQUALIFIED)}`];
  for (const r of registries) {
    lines.push("", "[[registry]]", `prefix = ${tomlString(r.key)}`, `location = ${tomlString(r.value)}`, "", "[[registry.mirror]]", `location = ${tomlString(location)}`, `insecure = ${proxy.protocol === "http:"}`);
  }
  const after = `${lines.join("\n")}\n`;
  const before = await readOptional(path);
  return { changes: before === after ? [] : [{ path, before, after }], notes: [`restart ${o.runtime === "crio" ? "CRI-O" : "Podman's services"} to load ${path}`] };
}

async function docker(o: InitOptions, proxy: URL): Promise<InitResult> {
  const path = o.configPath ?? DEFAULT_CONFIG_PATH.docker;
  const before = await readOptional(path);
  let config: Record<string, unknown> = {};
  if (before !== undefined && before.trim() !== "") {
    try {
      const parsed: unknown = JSON.parse(before);
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("top level is not an object");
      config = parsed as Record<string, unknown>;
    } catch (e) {
      throw new InitError(`${path}: not a JSON object: ${errorMessage(e)}`);
    }
  }
  const addr = `http://${proxy.host}`;
  config.proxies = { ...(config.proxies as Record<string, unknown> | undefined), "http-proxy": addr, "https-proxy": addr };
  const after = `${JSON.stringify(config, null, 2)}\n`;
  return {
    changes: before === after ? [] : [{ path, before, after }],
    notes: ["restart dockerd to load the proxies", "HTTPS pulls are intercepted: add the proxy's CA (<storage dir>/proxy/ca.crt) to the system trust store, e.g. /usr/local/share/ca-certificates/ + update-ca-certificates"],
  };
}

/** Computes the runtime's config changes, and writes them unless dryRun. */
export async function runInit(o: InitOptions): Promise<InitResult> {
  if (!(RUNTIMES as readonly string[]).includes(o.runtime)) throw new InitError(`unknown container runtime "${String(o.runtime)}" (expected one of: ${RUNTIMES.join(", ")})`);
  const proxyText = o.proxyAddr ?? DEFAULT_PROXY_ADDR;
  const proxy = parseProxyAddr(proxyText);
  const result = o.runtime === "containerd" ? await containerd(o, proxyText.replace(/\/+$/, "")) : o.runtime === "docker" ? await docker(o, proxy) : await registriesConf(o, proxy);
  if (!o.dryRun) {
    for (const c of result.changes) {
      await mkdir(dirname(c.path), { recursive: true });
      await writeFile(c.path, c.after);
    }
  }
  return result;
}

/** A unified diff of one file's change (3 lines of context), as `diff -u` prints it. */
export function unifiedDiff(path: string, before: string | undefined, after: string): string {
  const split = (t: string) => (t === "" ? [] : t.replace(/\n$/, "").split("\n"));
  const a = split(before ?? "");
  const b = split(after);
  // Longest common subsequence (config files are small).
  const lcs = Array.from({ length: a.length + 1 }, () => new Array<number>(b.length + 1).fill(0));
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      const row = lcs[i] as number[];
      row[j] = a[i] === b[j] ? (lcs[i + 1]?.[j + 1] ?? 0) + 1 : Math.max(lcs[i + 1]?.[j] ?? 0, row[j + 1] ?? 0);
    }
  }
  const ops: Array<{ t: " " | "-" | "+"; line: string }> = [];
  for (let i = 0, j = 0; i < a.length || j < b.length; ) {
    if (i < a.length && j < b.length && a[i] === b[j]) {
      ops.push({ t: " ", line: a[i] ?? "" });
      i++;
      j++;
    } else if (j < b.length && (i >= a.length || (lcs[i]?.[j + 1] ?? 0) >= (lcs[i + 1]?.[j] ?? 0))) {
      ops.push({ t: "+", line: b[j++] ?? "" });
    } else {
      ops.push({ t: "-", line: a[i++] ?? "" });
    }
  }
  const CONTEXT = 3;
  const out = [`--- ${before === undefined ? "/dev/null" : path}`, `+++ ${path}`];
  const changed = ops.flatMap((o, i) => (o.t === " " ? [] : [i]));
  let k = 0;
  while (k < changed.length) {
    const from = Math.max(0, (changed[k] ?? 0) - CONTEXT);
    let last = changed[k] ?? 0;
    while (k + 1 < changed.length && (changed[k + 1] ?? 0) - last <= 2 * CONTEXT) last = changed[++k] ?? last;
    k++;
    const to = Math.min(ops.length - 1, last + CONTEXT);
    const prior = ops.slice(0, from);
    const hunk = ops.slice(from, to + 1);
    const aLen = hunk.filter((h) => h.t !== "+").length;
    const bLen = hunk.filter((h) => h.t !== "-").length;
    const aStart = prior.filter((h) => h.t !== "+").length + (aLen > 0 ? 1 : 0);
    const bStart = prior.filter((h) => h.t !== "-").length + (bLen > 0 ? 1 : 0);
    out.push(`@@ -${aStart},${aLen} +${bStart},${bLen} @@`, ...hunk.map((h) => `${h.t}${h.line}`));
  }
  return `${out.join("\n")}\n`;
}

interface InitCommandOptions {
  configPath?: string;
  proxyAddr?: string;
  registry: string[];
  proxyAllRegistries: boolean;
  hostsDir?: string;
  skipVerify?: boolean;
  dryRun?: boolean;
}

export function register(program: Command): void {
  program
    .command("init")
    .description("configure a container runtime to pull through the local dfdaemon proxy (as Dragonfly's dfinit)")
    .argument("<runtime>", `container runtime: ${RUNTIMES.join(", ")}`)
    .option("--config-path <file>", "the runtime's config file (containerd config.toml, registries.conf, daemon.json)")
    .option("--proxy-addr <url>", "where the runtime reaches the proxy", DEFAULT_PROXY_ADDR)
    .option("--registry <spec>", "containerd: host=server; CRI-O/Podman: prefix=location (repeatable)", (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option("--no-proxy-all-registries", "containerd: do not add the catch-all _default mirror")
    .option("--hosts-dir <dir>", `containerd: hosts directory to set when config.toml has none (default ${DEFAULT_HOSTS_DIR})`)
    .option("--skip-verify", "containerd: skip TLS verification of the proxy host")
    .option("--dry-run", "print the changes as a diff and write nothing")
    .action(async (runtime: string, opts: InitCommandOptions) => {
      const result = await runInit({
        runtime: runtime as Runtime,
        configPath: opts.configPath,
        proxyAddr: opts.proxyAddr,
        registries: opts.registry,
        proxyAllRegistries: opts.proxyAllRegistries,
        hostsDir: opts.hostsDir,
        skipVerify: opts.skipVerify,
        dryRun: opts.dryRun,
      });
      for (const c of result.changes) process.stdout.write(opts.dryRun ? unifiedDiff(c.path, c.before, c.after) : `wrote ${c.path}\n`);
      if (result.changes.length === 0) process.stdout.write("nothing to change: the runtime already points at the proxy\n");
      for (const n of result.notes) process.stdout.write(`note: ${n}\n`);
    });
}
