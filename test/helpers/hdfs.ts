// A real HDFS on 127.0.0.1 for the back-to-source tests (issue 23): Hadoop's MiniDFSCluster (one
// namenode, one datanode, WebHDFS on) started by scripts/hdfs/MiniHdfs.java, installed once per
// machine by scripts/install-hdfs.sh (.ci/run runs it). A missing install fails the test.
// Files are written the way a user would: WebHDFS CREATE on the namenode, then the bytes to the
// datanode it redirects to. What HDFS served is counted on the wire (startNamenodeProxy): the
// datanode's own BytesRead counts what its block readers sent ahead, and only once they close.
import { spawn, type ChildProcess } from "node:child_process";
import { createReadStream, existsSync, statSync } from "node:fs";
import { createServer, request, type ClientRequest } from "node:http";
import { startCountingProxy, type CountingProxy } from "./counting-proxy.js";
import { userInfo } from "node:os";
import { join } from "node:path";

/** The version scripts/install-hdfs.sh installs by default. */
const HADOOP_VERSION = process.env.HADOOP_MINICLUSTER_VERSION ?? "3.4.2";
const INSTALL = join(process.env.DAMSELFLY_CACHE ?? "/var/cache/damselfly", `hdfs-${HADOOP_VERSION}`);

export interface MiniHdfs {
  /** The namenode's WebHDFS address, `127.0.0.1:port`. */
  namenode: string;
  /** The datanode's HTTP address (WebHDFS reads and writes), `127.0.0.1:port`. */
  datanode: string;
  /** `hdfs://127.0.0.1:port<path>` (path absolute, segments encoded as given). */
  url(path: string): string;
  /** Writes a file (replacing one there), parents created. */
  put(path: string, body: Buffer): Promise<void>;
  /** The same with a local file's content, streamed (a large one is never held in memory). */
  putFile(path: string, file: string): Promise<void>;
  mkdirs(path: string): Promise<void>;
  close(): Promise<void>;
}

interface Ready {
  namenodeHttpPort: number;
  datanodeHttpPort: number;
}

/** Starts the cluster in `dir`; fails (never skips) when scripts/install-hdfs.sh has not run. */
export async function startMiniHdfs(dir: string): Promise<MiniHdfs> {
  if (!existsSync(join(INSTALL, "classes", "MiniHdfs.class"))) throw new Error(`${INSTALL} is missing: run scripts/install-hdfs.sh (.ci/run does)`);
  const child = spawn("java", ["-Xmx512m", "-XX:TieredStopAtLevel=1", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", `${join(INSTALL, "classes")}:${join(INSTALL, "lib")}/*`, "MiniHdfs", dir], { stdio: ["pipe", "pipe", "pipe"] });
  let log = "";
  child.stderr.on("data", (c: Buffer) => (log = (log + c.toString()).slice(-6000)));
  const ready = await new Promise<Ready>((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`MiniDFSCluster did not come up in 180 s: ${log}`)), 180_000);
    child.stdout.on("data", (c: Buffer) => {
      out += c.toString();
      const line = out.split("\n").find((l) => l.startsWith('{"ready":true'));
      if (!line) return;
      clearTimeout(timer);
      resolve(JSON.parse(line) as Ready);
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`MiniDFSCluster exited (${code}) before it was up: ${log}`));
    });
  }).catch(async (e: unknown) => {
    await stop(child);
    throw e;
  });
  const namenode = `127.0.0.1:${ready.namenodeHttpPort}`;
  const user = userInfo().username;
  const webhdfs = (path: string, op: string, extra = "") => `http://${namenode}/webhdfs/v1${path}?op=${op}&user.name=${encodeURIComponent(user)}${extra}`;
  /** CREATE on the namenode, then `length` bytes, sent by `send`, to the datanode it names. */
  const create = async (path: string, length: number, send: (r: ClientRequest) => void) => {
    const nn = await fetch(webhdfs(path, "CREATE", "&overwrite=true"), { method: "PUT", redirect: "manual" });
    const location = nn.headers.get("location");
    if (nn.status !== 307 || !location) throw new Error(`CREATE ${path}: the namenode answered ${nn.status}: ${await nn.text()}`);
    // node:http, not fetch: the datanode answers "100 Continue" unasked, which undici refuses.
    const dn = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const r = request(location, { method: "PUT", headers: { "content-length": length } }, (res) => {
        let text = "";
        res.on("data", (c: Buffer) => (text += c.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
      });
      r.on("error", reject);
      send(r);
    });
    if (dn.status !== 201) throw new Error(`CREATE ${path}: the datanode answered ${dn.status}: ${dn.text}`);
  };
  return {
    namenode,
    datanode: `127.0.0.1:${ready.datanodeHttpPort}`,
    url: (path) => `hdfs://${namenode}${path}`,
    put: (path, body) => create(path, body.length, (r) => r.end(body)),
    putFile: (path, file) => create(path, statSync(file).size, (r) => createReadStream(file).on("error", (e) => r.destroy(e)).pipe(r)),
    async mkdirs(path) {
      const res = await fetch(webhdfs(path, "MKDIRS"), { method: "PUT" });
      if (res.status !== 200) throw new Error(`MKDIRS ${path}: ${res.status}: ${await res.text()}`);
    },
    close: () => stop(child),
  };
}

/** Closing stdin makes the launcher shut the cluster down; SIGKILL if it does not within 20 s. */
function stop(child: ChildProcess): Promise<void> {
  return new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.stdin?.end();
    setTimeout(() => child.kill("SIGKILL"), 20_000).unref();
  });
}

/**
 * An HTTP proxy on 127.0.0.1 in front of the namenode's WebHDFS: it records every request's
 * URL (path and query: the delegation token must arrive there), can hold requests until the
 * test lets them go (to change a file between two reads at a known point), and sends reads to
 * the datanode through a counting proxy (the namenode's redirects rewritten to it): what HDFS
 * served is what the datanode sent through it.
 */
export interface NamenodeProxy {
  /** `127.0.0.1:port`: an hdfs:// URL naming it reaches the namenode through the proxy. */
  address: string;
  /** Bytes the datanode sent to readers redirected through the proxy (headers included). */
  served(): number;
  /** Every request's path and query, in order. */
  requests: string[];
  /** Holds requests `match` picks until `release`; `reached` resolves when the first is held. */
  hold(match: (u: URL) => boolean): { reached: Promise<void>; release(): void };
  close(): Promise<void>;
}

export async function startNamenodeProxy(hdfs: MiniHdfs): Promise<NamenodeProxy> {
  const counting: CountingProxy = await startCountingProxy(Number(hdfs.datanode.split(":")[1]));
  const datanode = `http://${hdfs.datanode}/`;
  const requests: string[] = [];
  let gate: { match: (u: URL) => boolean; open: Promise<void>; onHeld: () => void } | undefined;
  const server = createServer((req, res) => {
    const target = req.url ?? "/";
    requests.push(target);
    const forward = () => {
      const up = request(`http://${hdfs.namenode}${target}`, { method: req.method, headers: req.headers }, (r) => {
        const location = r.headers.location;
        if (location?.startsWith(datanode)) r.headers.location = `http://127.0.0.1:${counting.port}/${location.slice(datanode.length)}`;
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      up.on("error", () => res.destroy());
      req.pipe(up);
    };
    const g = gate;
    if (g?.match(new URL(target, "http://x"))) {
      g.onHeld();
      void g.open.then(forward);
    } else forward();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    address: `127.0.0.1:${(server.address() as { port: number }).port}`,
    served: () => counting.served(),
    requests,
    hold(match) {
      let release!: () => void;
      let onHeld!: () => void;
      const open = new Promise<void>((r) => (release = r));
      const reached = new Promise<void>((r) => (onHeld = r));
      gate = { match, open, onHeld };
      return {
        reached,
        release: () => {
          gate = undefined;
          release();
        },
      };
    },
    close: async () => {
      await new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
      await counting.close();
    },
  };
}
