// Real container-runtime pieces for the mirror e2e tests: Debian's containerd and ctr on a private
// root, state and socket; Debian's docker-registry with its access log (plain HTTP, htpasswd or
// TLS); an image of uncompressed tar layers pushed through the distribution API; and the bytes
// the registry sent per blob, read back from its access log.
//
// A missing binary fails the test that needs it (CI installs them in .ci/run): a mirror test that
// silently skips would hide exactly the bypass it exists to catch.
import { spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { request, type Dispatcher } from "undici";

const which = (bin: string) => ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/bin", "/sbin"].map((d) => join(d, bin)).find((p) => existsSync(p));

/** The binary's path, or an error naming the Debian package that provides it. */
export function requireBin(bin: "docker-registry" | "containerd" | "ctr" | "openssl" | "python3"): string {
  const path = which(bin);
  if (path) return path;
  const pkg = { "docker-registry": "docker-registry", containerd: "containerd", ctr: "containerd", openssl: "openssl", python3: "python3" }[bin];
  throw new Error(`${bin} is not installed (Debian package ${pkg}; .ci/run installs it)`);
}

export function requireRoot(what: string): void {
  if (process.getuid?.() !== 0) throw new Error(`${what} needs root (containerd unpacks layers with chown)`);
}

/** Child processes a test file started, stopped together in afterAll. */
export class Processes {
  private readonly children: ChildProcess[] = [];

  spawn(bin: string, args: string[], onOutput?: (text: string) => void): ChildProcess {
    const child = spawn(bin, args, { stdio: ["ignore", onOutput ? "pipe" : "ignore", onOutput ? "pipe" : "ignore"] });
    child.stdout?.on("data", (c: Buffer) => onOutput?.(c.toString()));
    child.stderr?.on("data", (c: Buffer) => onOutput?.(c.toString()));
    this.children.push(child);
    return child;
  }

  async stopAll(): Promise<void> {
    await Promise.all(
      this.children.splice(0).map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once("exit", () => resolve());
            child.kill("SIGTERM");
            setTimeout(() => child.kill("SIGKILL"), 5000).unref();
          }),
      ),
    );
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

export async function waitFor(check: () => Promise<boolean>, what: string, attempts = 400): Promise<void> {
  for (let i = 0; i < attempts; i++) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${what} did not come up`);
}

export interface LoggedRegistry {
  port: number;
  /** `http://127.0.0.1:{port}` or `https://…` */
  base: string;
  /** Access log lines (stdout + stderr of the registry). */
  log(): string;
}

export interface RegistryOptions {
  /** An htpasswd file (bcrypt) that every request must authenticate against. */
  htpasswd?: string;
  /** Serve HTTPS with this certificate and key (PEM files). */
  tls?: { cert: string; key: string };
  /** Trusts `tls.cert` for the readiness probe. */
  dispatcher?: Dispatcher;
}

/** Debian's docker-registry on a loopback port with its access log on. */
export async function startLoggedRegistry(procs: Processes, dir: string, o: RegistryOptions = {}): Promise<LoggedRegistry> {
  const bin = requireBin("docker-registry");
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const auth = o.htpasswd ? `auth:\n  htpasswd:\n    realm: e2e\n    path: ${o.htpasswd}\n` : "";
  const tls = o.tls ? `  tls:\n    certificate: ${o.tls.cert}\n    key: ${o.tls.key}\n` : "";
  writeFileSync(join(dir, "config.yml"), `version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, "data")}\n${auth}http:\n  addr: 127.0.0.1:${port}\n${tls}`);
  let text = "";
  procs.spawn(bin, ["serve", join(dir, "config.yml")], (t) => (text += t));
  const base = `${o.tls ? "https" : "http"}://127.0.0.1:${port}`;
  await waitFor(async () => {
    const r = await request(`${base}/v2/`, o.dispatcher ? { dispatcher: o.dispatcher } : {});
    await r.body.dump();
    return r.statusCode === 200 || r.statusCode === 401;
  }, "docker-registry");
  return { port, base, log: () => text };
}

/** A self-signed certificate for 127.0.0.1 (it is its own CA), made by openssl. */
export async function selfSignedCert(dir: string): Promise<{ cert: string; key: string }> {
  mkdirSync(dir, { recursive: true });
  const cert = join(dir, "registry.crt");
  const key = join(dir, "registry.key");
  const args = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert];
  const code = await new Promise<number | null>((resolve) => spawn(requireBin("openssl"), args, { stdio: "ignore" }).once("exit", resolve));
  if (code !== 0) throw new Error(`openssl req failed (${code})`);
  return { cert, key };
}

/** A tar archive (ustar) of regular files, as an uncompressed OCI layer. */
export function tarOf(files: Record<string, Buffer>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, body] of Object.entries(files)) {
    const h = Buffer.alloc(512);
    h.write(name, 0, 100, "utf8");
    h.write("0000644\0", 100);
    h.write("0000000\0", 108);
    h.write("0000000\0", 116);
    h.write(`${body.length.toString(8).padStart(11, "0")}\0`, 124);
    h.write(`${Math.floor(Date.now() / 1000).toString(8).padStart(11, "0")}\0`, 136);
    h.write("        ", 148);
    h.write("0", 156);
    h.write("ustar\0", 257);
    h.write("00", 263);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148);
    parts.push(h, body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

const sha = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

export interface LayeredImage {
  manifestDigest: string;
  /** The config blob, then the layers. */
  layers: Array<{ digest: string; size: number }>;
  /** Every file of every layer, by its path in the image. */
  files: Record<string, Buffer>;
}

/** Pushes an image of `layerMiB.length` tar layers (sizes in MiB) through the distribution API. */
export async function pushLayeredImage(base: string, repo: string, tag: string, o: { authHeader?: string; dispatcher?: Dispatcher; layerMiB?: number[] } = {}): Promise<LayeredImage> {
  const url = `${base}/v2/${repo}`;
  const headers = o.authHeader ? { authorization: o.authHeader } : {};
  const via = o.dispatcher ? { dispatcher: o.dispatcher } : {};
  const upload = async (content: Buffer) => {
    const digest = sha(content);
    const start = await request(`${url}/blobs/uploads/`, { method: "POST", headers, ...via });
    await start.body.dump();
    if (start.statusCode !== 202) throw new Error(`upload start answered ${start.statusCode}`);
    const location = new URL(String(start.headers.location), base);
    location.searchParams.set("digest", digest);
    const put = await request(location.href, { method: "PUT", body: content, headers: { ...headers, "content-type": "application/octet-stream" }, ...via });
    await put.body.dump();
    if (put.statusCode !== 201) throw new Error(`blob upload answered ${put.statusCode}`);
    return { digest, size: content.length };
  };
  const files: Record<string, Buffer> = {};
  const layers = [];
  for (const [i, mib] of (o.layerMiB ?? [10, 13, 16]).entries()) {
    const layerFiles = { [`data/${repo.replace(/\W/g, "-")}-${i}.bin`]: randomBytes(Math.round(mib * 1024 * 1024)), [`etc/${repo.replace(/\W/g, "-")}-${i}.txt`]: Buffer.from(`layer ${i}\n`) };
    Object.assign(files, layerFiles);
    layers.push(await upload(tarOf(layerFiles)));
  }
  const config = await upload(
    Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", config: {}, rootfs: { type: "layers", diff_ids: layers.map((l) => l.digest) }, history: layers.map(() => ({ created_by: "damselfly e2e" })) })),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
      layers: layers.map((l) => ({ mediaType: "application/vnd.oci.image.layer.v1.tar", ...l })),
    }),
  );
  const put = await request(`${url}/manifests/${tag}`, { method: "PUT", body: manifest, headers: { ...headers, "content-type": "application/vnd.oci.image.manifest.v1+json" }, ...via });
  await put.body.dump();
  if (put.statusCode !== 201) throw new Error(`manifest put answered ${put.statusCode}`);
  return { manifestDigest: sha(manifest), layers: [config, ...layers], files };
}

export interface Containerd {
  /** containerd's root (content store, snapshots). */
  root: string;
  /** Its config.toml, which `damselfly init containerd --config-path` edits. */
  config: string;
  ctr(args: string[]): Promise<{ code: number | null; out: string }>;
}

/** The config.toml of a private containerd under `dir` (own root, state and socket). */
export function writeContainerdConfig(dir: string): string {
  mkdirSync(dir, { recursive: true });
  const config = join(dir, "config.toml");
  writeFileSync(config, `version = 2\nroot = "${join(dir, "root")}"\nstate = "${join(dir, "state")}"\n[grpc]\n  address = "${join(dir, "containerd.sock")}"\n[plugins."io.containerd.internal.v1.opt"]\n  path = "${join(dir, "opt")}"\n`);
  return config;
}

/** Starts containerd on the config `writeContainerdConfig(dir)` wrote (and init edited). */
export async function startContainerd(procs: Processes, dir: string): Promise<Containerd> {
  const containerd = requireBin("containerd");
  const ctrBin = requireBin("ctr");
  const config = join(dir, "config.toml");
  const sock = join(dir, "containerd.sock");
  procs.spawn(containerd, ["--config", config]);
  const ctr = (args: string[]) =>
    new Promise<{ code: number | null; out: string }>((resolve) => {
      const c = spawn(ctrBin, ["--address", sock, ...args], { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      c.stdout.on("data", (x: Buffer) => (out += x.toString()));
      c.stderr.on("data", (x: Buffer) => (out += x.toString()));
      c.on("close", (code) => resolve({ code, out }));
    });
  await waitFor(async () => (await ctr(["version"])).code === 0, "containerd");
  return { root: join(dir, "root"), config, ctr };
}

/** Bytes the registry sent per blob digest, from its combined-format access log. */
export function blobBytes(log: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of log.matchAll(/"GET \/v2\/[^ ]+\/blobs\/(sha256:[0-9a-f]{64})(?:\?[^ ]*)? HTTP\/1\.1" (\d{3}) (\d+)/g)) {
    if (m[1] && (m[2] === "200" || m[2] === "206")) out.set(m[1], (out.get(m[1]) ?? 0) + Number(m[3]));
  }
  return out;
}

/** The first regular file under `root` whose path ends with `name`. */
export function findFile(root: string, name: string): string | undefined {
  const stack = [root];
  while (stack.length > 0) {
    const d = stack.pop() as string;
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) stack.push(p);
      else if (e.isFile() && p.endsWith(name)) return p;
    }
  }
  return undefined;
}

/**
 * The image's files that the native snapshotter under `root` does not hold byte for byte
 * (missing, or other bytes): an empty list when the pull unpacked every layer right.
 */
export function unpackedMismatches(root: string, files: Record<string, Buffer>): string[] {
  const snapshots = join(root, "io.containerd.snapshotter.v1.native", "snapshots");
  return Object.entries(files).flatMap(([name, body]) => {
    const path = findFile(snapshots, name);
    if (!path) return [`${name}: missing`];
    return readFileSync(path).equals(body) ? [] : [`${name}: other bytes`];
  });
}
