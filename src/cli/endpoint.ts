// Which dfdaemon socket dfget, dfctl and dfcache talk to, found the same way by all three:
// `-e/--endpoint`, then $DAMSELFLY_ENDPOINT, then the endpoint.json a running `damselfly up`
// leaves in its data dir (.damselfly/ here or in a parent directory), then Dragonfly's default
// socket. Without the endpoint.json step, `dfctl task ls` right after `damselfly up` asked
// /var/run/dragonfly, where nothing listens, and dfget quietly downloaded outside the swarm.
//
// dfget imports this before anything else and `up` imports it to write the file, so it stays
// free of the daemon and of generated gRPC code: node builtins, grpc-js's status enum and
// commander, all three of which every importer loads anyway.
import { existsSync, readFileSync } from "node:fs";
import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import { status, type ServiceError } from "@grpc/grpc-js";
import { Option } from "commander";
import { DEFAULT_SOCKET_PATH } from "../daemon/constants.js";

/** The directory `damselfly up` uses by default, and where the CLIs look for its endpoint file. */
export const UP_DIR = ".damselfly";
/** The file `damselfly up` writes into its data dir while it runs (see {@link UpEndpoint}). */
export const UP_ENDPOINT_FILE = "endpoint.json";
/** Environment variable naming the socket when -e is not given. */
export const ENDPOINT_ENV = "DAMSELFLY_ENDPOINT";

/** The content of `<dataDir>/endpoint.json`, written by `damselfly up` for as long as it runs. */
export interface UpEndpoint {
  /** The `damselfly up` process; a file whose process is gone is stale and ignored. */
  pid: number;
  /** Absolute path of up's data dir. */
  dataDir: string;
  /** Absolute path of the first peer's dfdaemon.sock. */
  socket: string;
  /** The first peer's HTTP proxy, e.g. http://127.0.0.1:4001. */
  proxy: string;
  /** The manager's REST API, e.g. http://127.0.0.1:8080. */
  manager: string;
}

export type EndpointSource = "flag" | "env" | "up" | "default";

export interface Endpoint {
  /** Absolute path of the dfdaemon unix socket. */
  socket: string;
  /** How the socket was chosen, for messages that must say why this one was tried. */
  source: EndpointSource;
  /** Absolute path of the endpoint.json the socket came from (source "up"). */
  upFile?: string;
}

/** Where the socket comes from when -e is not given; the same text in every CLI's --help. */
const ENDPOINT_HELP = `dfdaemon unix socket (default: $${ENDPOINT_ENV}, else the socket of a running 'damselfly up' found through ${UP_DIR}/${UP_ENDPOINT_FILE} here or in a parent directory, else ${DEFAULT_SOCKET_PATH})`;

/** The `-e, --endpoint` option, with no commander default: an absent flag lets discovery run. */
export function endpointOption(): Option {
  return new Option("-e, --endpoint <socket>", ENDPOINT_HELP);
}

/** Whether a process with this pid exists (EPERM: it does, but belongs to another user). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

function isHttpUrl(v: unknown): v is string {
  if (typeof v !== "string") return false;
  try {
    const u = new URL(v);
    return u.protocol === "http:" || u.protocol === "https:";
  } catch {
    return false;
  }
}

const isAbsPath = (v: unknown): v is string => typeof v === "string" && v.length > 0 && isAbsolute(v);

/** The file's endpoint if it is well-formed, else undefined (a half-written or foreign file). */
function parseUpEndpoint(text: string): UpEndpoint | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== "object" || v === null) return undefined;
  const o = v as Record<string, unknown>;
  // pid 0 or negative would make process.kill(pid, 0) probe a whole process group.
  if (typeof o.pid !== "number" || !Number.isInteger(o.pid) || o.pid <= 0) return undefined;
  if (!isAbsPath(o.dataDir) || !isAbsPath(o.socket) || !isHttpUrl(o.proxy) || !isHttpUrl(o.manager)) return undefined;
  return { pid: o.pid, dataDir: o.dataDir, socket: o.socket, proxy: o.proxy, manager: o.manager };
}

/**
 * The nearest `.damselfly/endpoint.json` of a live `damselfly up`, from `startDir` up to `/`.
 * Stale (dead pid) and malformed files are skipped rather than ending the walk, so a leftover
 * file from a crashed `up` in a subproject does not hide a running one further up.
 */
function findUpEndpoint(startDir: string): { file: string; up: UpEndpoint } | undefined {
  for (let dir = resolve(startDir); ; dir = dirname(dir)) {
    const file = join(dir, UP_DIR, UP_ENDPOINT_FILE);
    let text: string | undefined;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      // absent or unreadable: look further up
    }
    const up = text === undefined ? undefined : parseUpEndpoint(text);
    if (up && processAlive(up.pid)) return { file, up };
    if (dirname(dir) === dir) return undefined;
  }
}

/** What a running `damselfly up` found from `startDir` (default: cwd) publishes, if any. */
export function readUpEndpoint(startDir: string = process.cwd()): UpEndpoint | undefined {
  return findUpEndpoint(startDir)?.up;
}

export interface DiscoverOptions {
  /** The value of -e/--endpoint, if given. */
  flag?: string | undefined;
  /** Defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /** Defaults to process.cwd(); relative sockets and the endpoint.json walk start here. */
  cwd?: string;
}

/**
 * The socket to use and how it was chosen. Relative paths are resolved against cwd: a grpc
 * target `unix://rel.sock` reads `rel.sock` as an authority and never finds the file.
 */
export function discoverEndpoint(opts: DiscoverOptions = {}): Endpoint {
  const cwd = opts.cwd ?? process.cwd();
  if (opts.flag !== undefined) return { socket: resolve(cwd, opts.flag), source: "flag" };
  // An empty variable is how shells unset things in one command (`DAMSELFLY_ENDPOINT= dfget`).
  const fromEnv = (opts.env ?? process.env)[ENDPOINT_ENV];
  if (fromEnv) return { socket: resolve(cwd, fromEnv), source: "env" };
  const found = findUpEndpoint(cwd);
  if (found) return { socket: found.up.socket, source: "up", upFile: found.file };
  return { socket: DEFAULT_SOCKET_PATH, source: "default" };
}

/** Whether the socket was named by the user (-e or the environment) rather than found. */
export function isExplicit(ep: Endpoint): boolean {
  return ep.source === "flag" || ep.source === "env";
}

/** The grpc-js target for a socket path; `unix://` needs an absolute path (`unix:///abs`). */
export function daemonTarget(socket: string): string {
  return `unix://${resolve(socket)}`;
}

function howChosen(ep: Endpoint): string {
  switch (ep.source) {
    case "flag":
      return "given by -e/--endpoint";
    case "env":
      return `from $${ENDPOINT_ENV}`;
    case "up": {
      // Relative to cwd when that is shorter (".damselfly/endpoint.json"), as the user sees it.
      const file = ep.upFile ?? UP_ENDPOINT_FILE;
      const rel = relative(process.cwd(), file);
      return `found via ${rel.length < file.length ? rel : file}`;
    }
    case "default":
      return `the default: no -e, $${ENDPOINT_ENV} or running 'damselfly up' found`;
  }
}

/** The one-line error for a daemon that is not there or does not answer on `ep`. */
export function unreachableError(ep: Endpoint): Error {
  return new Error(`cannot reach the dfdaemon at ${ep.socket} (${howChosen(ep)}; is it running? pass -e SOCKET or set ${ENDPOINT_ENV})`);
}

/** Fails early, with the naming error, when there is no socket file to connect to. */
export function requireSocket(ep: Endpoint): void {
  if (!existsSync(ep.socket)) throw unreachableError(ep);
}

/**
 * A failed call to the daemon as a one-line error. UNAVAILABLE means "not reachable" only when
 * grpc-js produced it locally: the daemon also answers UNAVAILABLE itself (swarm could not serve
 * the task, scheduler down), and those answers carry x-dragonfly-error-type and a message worth
 * showing. `ep` is omitted for a daemon this process started itself (dfget's one-shot daemon),
 * whose socket was not discovered and so has nothing to explain.
 */
export function daemonCallError(err: ServiceError, ep?: Endpoint): Error {
  const fromDaemon = err.metadata.get("x-dragonfly-error-type").length > 0;
  if (ep && err.code === status.UNAVAILABLE && !fromDaemon) return unreachableError(ep);
  return new Error(err.details || err.message);
}
