// The README's "Use it as a registry mirror" section, followed as a newcomer would on a fresh
// `up` (issue 22): `npm start`'s stack (here `up` from the sources, in the test's own working
// directory), then the `damselfly init containerd` line exactly as the banner prints it, for two
// private containerd roots. Both pull an image from Debian's docker-registry over plain HTTP and
// one from a second docker-registry behind TLS, through the catch-all `_default` entry alone (no
// per-registry entry names either registry), and each registry's access log shows every blob's
// bytes sent once in all: the swarm served the rest. containerd falls back to the registry
// silently when the mirror fails, so the byte count is what proves the mirror was used.
//
// Needs root and Debian's containerd, docker-registry and openssl (installed by .ci/run); a
// missing one fails the test.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Agent } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  blobBytes,
  Processes,
  pushLayeredImage,
  requireBin,
  requireRoot,
  selfSignedCert,
  startContainerd,
  startLoggedRegistry,
  unpackedMismatches,
  writeContainerdConfig,
  type LayeredImage,
  type LoggedRegistry,
} from "../helpers/containerd.js";
import { cleanupTempDirs, tempDir } from "../helpers/swarm.js";

const root = join(import.meta.dirname, "..", "..");
const tsx = join(root, "node_modules", "tsx", "dist", "loader.mjs");
const procs = new Processes();

/** The README section's shell lines (comments dropped), in order. */
function readmeMirrorCommands(): string[] {
  const text = readFileSync(join(root, "README.md"), "utf8");
  const start = text.indexOf("## Use it as a registry mirror");
  expect(start, "README has a section 'Use it as a registry mirror'").toBeGreaterThan(0);
  const next = text.indexOf("\n## ", start + 1);
  const section = text.slice(start, next < 0 ? undefined : next);
  const blocks = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1] ?? "");
  return blocks
    .join("\n")
    .split("\n")
    .map((l) => l.replace(/\s+#.*$/, "").trim())
    .filter(Boolean);
}

function run(argv: string[], cwd: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(argv[0] === "node" ? process.execPath : (argv[0] as string), argv.slice(1), { cwd, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    p.stdout.on("data", (b: Buffer) => (out += b.toString()));
    p.stderr.on("data", (b: Buffer) => (out += b.toString()));
    p.once("close", (code) => resolve({ code, out }));
  });
}

describe("the README's registry mirror section on a fresh up", () => {
  const work = tempDir("mirror-readme");
  let up: ChildProcess | undefined;
  let banner = "";
  let plain: LoggedRegistry;
  let secure: LoggedRegistry;
  const images: Array<{ registry: LoggedRegistry; image: LayeredImage; ref: string }> = [];

  beforeAll(async () => {
    requireRoot("mirror-readme");
    for (const bin of ["containerd", "ctr", "docker-registry", "openssl"] as const) requireBin(bin);
    const tls = await selfSignedCert(join(work, "tls"));
    const trust = new Agent({ connect: { ca: readFileSync(tls.cert) } });
    plain = await startLoggedRegistry(procs, join(work, "registry-http"));
    secure = await startLoggedRegistry(procs, join(work, "registry-https"), { tls, dispatcher: trust });
    // Layers of several pieces (4 MiB) go through the seed peer; the config blob is one piece.
    for (const [registry, repo] of [[plain, "readme/plain"], [secure, "readme/tls"]] as const) {
      const image = await pushLayeredImage(registry.base, repo, "v1", { layerMiB: [6, 9], ...(registry === secure ? { dispatcher: trust } : {}) });
      images.push({ registry, image, ref: `127.0.0.1:${registry.port}/${repo}:v1` });
    }
    await trust.close();

    // `npm start` is `damselfly up` in the package directory; here the same from the sources, in
    // the test's directory, trusting the TLS registry's CA as the README says.
    const child = spawn(process.execPath, ["--import", tsx, join(root, "src", "up", "launch.ts"), "up"], {
      cwd: work,
      env: { ...process.env, NODE_EXTRA_CA_CERTS: tls.cert },
      stdio: ["ignore", "pipe", "pipe"],
    });
    up = child;
    child.stdout.on("data", (b: Buffer) => (banner += b.toString()));
    child.stderr.on("data", (b: Buffer) => (banner += b.toString()));
    const deadline = Date.now() + 240_000;
    while (!/damselfly: ready/.test(banner)) {
      if (child.exitCode !== null) throw new Error(`up exited (${child.exitCode}):\n${banner}`);
      if (Date.now() > deadline) throw new Error(`up not ready:\n${banner}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  afterAll(async () => {
    await procs.stopAll();
    if (up && up.exitCode === null) {
      const exited = new Promise((r) => up?.once("exit", r));
      up.kill("SIGINT");
      await exited;
    }
    cleanupTempDirs();
  });

  /** The banner's `damselfly init containerd` line as an argv. */
  function initLine(): string[] {
    const lines = banner.split("\n");
    const at = lines.findIndex((l) => l.startsWith("pull images through the swarm"));
    expect(at, banner).toBeGreaterThan(0);
    return (lines[at + 1] ?? "").trim().split(/\s+/);
  }

  it("says what up prints: npm start, then init containerd with no flag at the default port", () => {
    const commands = readmeMirrorCommands();
    expect(commands[0]).toBe("npm start");
    const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { scripts: Record<string, string> };
    expect(pkg.scripts.start).toBe("node bin/damselfly.js up");
    expect(commands[1]).toBe("node bin/damselfly.js init containerd");
    const mirrorPort = Number(/^mirror\s+127\.0\.0\.1:(\d+) /m.exec(banner)?.[1]);
    expect(mirrorPort, banner).toBeGreaterThan(0);
    // The printed line is the README's, plus --proxy-addr only when 4001 was taken.
    const argv = initLine();
    const tail = argv.slice(argv.indexOf("init"));
    expect(tail).toEqual(mirrorPort === 4001 ? ["init", "containerd"] : ["init", "containerd", "--proxy-addr", `http://127.0.0.1:${mirrorPort}`]);
  });

  it("two containerd roots pull through the catch-all entry; each registry sends each blob's bytes once", async () => {
    const before = new Map(images.map(({ registry }) => [registry, blobBytes(registry.log())]));
    for (let i = 0; i < 2; i++) {
      const dir = join(work, `containerd-${i}`);
      const config = writeContainerdConfig(dir);
      const hostsDir = join(dir, "certs.d");
      // The printed line, pointed at this private containerd instead of /etc/containerd.
      const init = await run([...initLine(), "--config-path", config, "--hosts-dir", hostsDir], work);
      expect(init.code, init.out).toBe(0);
      expect(readdirSync(hostsDir)).toEqual(["_default"]);
      expect(readFileSync(config, "utf8")).toContain(`config_path = "${hostsDir}"`);
      const ctd = await startContainerd(procs, dir);
      for (const { image, ref } of images) {
        const pull = await ctd.ctr(["images", "pull", "--hosts-dir", hostsDir, "--snapshotter", "native", ref]);
        expect(pull.code, pull.out).toBe(0);
        expect((await ctd.ctr(["images", "ls"])).out).toContain(image.manifestDigest);
        expect(unpackedMismatches(ctd.root, image.files)).toEqual([]);
      }
    }
    for (const { registry, image } of images) {
      const after = blobBytes(registry.log());
      for (const l of image.layers) {
        const sent = (after.get(l.digest) ?? 0) - (before.get(registry)?.get(l.digest) ?? 0);
        // Pieces are ranged requests and the length probe asks for one byte: bytes, not requests.
        expect(sent, `${registry.base} ${l.digest}`).toBeGreaterThanOrEqual(l.size);
        expect(sent, `${registry.base} ${l.digest}`).toBeLessThanOrEqual(l.size + 1024);
      }
    }
    // The mirror's peer holds the blobs; dfctl finds it with no flags from the up's directory.
    const ls = await run(["node", "--import", tsx, join(root, "src", "up", "launch.ts"), "dfctl", "task", "ls", "--json"], work);
    expect(ls.code, ls.out).toBe(0);
    const tasks = JSON.parse(ls.out) as Array<{ finishedAt?: string }>;
    const blobs = images.reduce((n, { image }) => n + image.layers.length, 0);
    expect(tasks.filter((t) => t.finishedAt).length).toBeGreaterThanOrEqual(blobs);
    expect(existsSync(join(work, ".damselfly", "endpoint.json"))).toBe(true);
  });
});
