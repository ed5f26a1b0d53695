// A real OCI registry for tests: Debian's docker-registry (distribution v2) on a loopback port
// with its storage in a temp dir, and an image pushed through the distribution API (blob
// upload POST + PUT, manifests, an OCI index over two platforms).
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { request } from "undici";

export const REGISTRY_BIN = ["/usr/bin/docker-registry", "/usr/sbin/docker-registry"].find((p) => existsSync(p));
export const REGISTRY_SKIP = "docker-registry (Debian package) is not installed: tests against a real registry skipped";

export interface RealRegistry {
  port: number;
  /** `http://127.0.0.1:{port}` */
  base: string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise<number>((resolve) => {
    const probe = createServer();
    probe.listen(0, "127.0.0.1", () => {
      const p = (probe.address() as AddressInfo).port;
      probe.close(() => resolve(p));
    });
  });
}

/** Runs Debian's docker-registry on a loopback port with storage in `dir`; resolves once /v2/ answers. */
export async function startRealRegistry(dir: string): Promise<RealRegistry> {
  if (!REGISTRY_BIN) throw new Error(REGISTRY_SKIP);
  const port = await freePort();
  const config = join(dir, "config.yml");
  writeFileSync(config, `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, "data")}\nhttp:\n  addr: 127.0.0.1:${port}\n`);
  const child = spawn(REGISTRY_BIN, ["serve", config], { stdio: "ignore" });
  let up = false;
  for (let i = 0; i < 400 && !up && child.exitCode === null; i++) {
    try {
      const r = await request(`http://127.0.0.1:${port}/v2/`);
      await r.body.dump();
      up = r.statusCode === 200;
    } catch {
      // not listening yet
    }
    if (!up) await new Promise((res) => setTimeout(res, 25));
  }
  const stop = () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once("exit", () => resolve());
      child.kill("SIGTERM");
    });
  if (!up) {
    await stop();
    throw new Error(`docker-registry did not come up on 127.0.0.1:${port}`);
  }
  return { port, base: `http://127.0.0.1:${port}`, stop };
}

export interface PushedImage {
  /** Config digest then layer digests, per architecture ("amd64", "arm64"). */
  blobs: Record<string, string[]>;
  /** Every blob's bytes by digest. */
  contents: Map<string, Buffer>;
  /** `{base}/v2/{repo}/manifests/{tag}` */
  manifestUrl: string;
  /** `{base}/v2/{repo}/blobs/{digest}` */
  blobUrl(digest: string): string;
}

/**
 * Pushes a two-platform OCI image (an index over linux/amd64 and linux/arm64, each with a
 * config and `layers` random layers of `layerBytes`) through the distribution API.
 */
export async function pushImage(port: number, repo: string, tag: string, opts: { layers?: number; layerBytes?: number } = {}): Promise<PushedImage> {
  const base = `http://127.0.0.1:${port}/v2/${repo}`;
  const contents = new Map<string, Buffer>();
  const upload = async (content: Buffer) => {
    const digest = `sha256:${createHash("sha256").update(content).digest("hex")}`;
    const start = await request(`${base}/blobs/uploads/`, { method: "POST" });
    await start.body.dump();
    const location = new URL(String(start.headers.location), `http://127.0.0.1:${port}`);
    location.searchParams.set("digest", digest);
    const put = await request(location.href, { method: "PUT", body: content, headers: { "content-type": "application/octet-stream" } });
    await put.body.dump();
    if (put.statusCode !== 201) throw new Error(`blob upload ${put.statusCode}`);
    contents.set(digest, content);
    return { digest, size: content.length };
  };
  const putManifest = async (ref: string, mediaType: string, body: object) => {
    const text = Buffer.from(JSON.stringify(body));
    const r = await request(`${base}/manifests/${ref}`, { method: "PUT", body: text, headers: { "content-type": mediaType } });
    await r.body.dump();
    if (r.statusCode !== 201) throw new Error(`manifest put ${r.statusCode}`);
    return { digest: `sha256:${createHash("sha256").update(text).digest("hex")}`, size: text.length };
  };
  const blobs: Record<string, string[]> = {};
  const entries = [];
  for (const arch of ["amd64", "arm64"]) {
    const config = await upload(Buffer.from(JSON.stringify({ architecture: arch, os: "linux", rootfs: { type: "layers", diff_ids: [] } })));
    const layers = [];
    for (let i = 0; i < (opts.layers ?? 1); i++) layers.push(await upload(randomBytes(opts.layerBytes ?? 2048)));
    const manifest = {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
      layers: layers.map((l) => ({ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", ...l })),
    };
    const m = await putManifest(`${arch}-only`, manifest.mediaType, manifest);
    entries.push({ mediaType: manifest.mediaType, ...m, platform: { os: "linux", architecture: arch } });
    blobs[arch] = [config.digest, ...layers.map((l) => l.digest)];
  }
  await putManifest(tag, "application/vnd.oci.image.index.v1+json", { schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: entries });
  return { blobs, contents, manifestUrl: `${base}/manifests/${tag}`, blobUrl: (digest) => `${base}/blobs/${digest}` };
}
