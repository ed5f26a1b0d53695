// Real object stores on 127.0.0.1 for the back-to-source tests (issue 23): SeaweedFS (S3),
// Azurite (Azure Blob) and fake-gcs-server (GCS), each on ephemeral ports in a temp dir, with
// a counting proxy in front (what the store served). The Go servers are built once per machine
// by scripts/install-object-stores.sh (.ci/run runs it); a missing binary fails the test.
import { createReadStream, existsSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CreateAccessKeyCommand, CreateUserCommand, IAMClient, PutUserPolicyCommand } from "@aws-sdk/client-iam";
import { CreateBucketCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { BlobServiceClient, StorageSharedKeyCredential } from "@azure/storage-blob";
import { Storage } from "@google-cloud/storage";
import { freePort, Processes, waitFor } from "./containerd.js";
import { startCountingProxy, type CountingProxy } from "./counting-proxy.js";

// The SDK's Node 22 notice (object-store-s3.ts) is noise in test output too.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

const CACHE_BIN = join(process.env.DAMSELFLY_CACHE ?? "/var/cache/damselfly", "bin");

export function objectStoreBin(name: "weed" | "fake-gcs-server"): string {
  const bin = join(CACHE_BIN, name);
  if (!existsSync(bin)) throw new Error(`${bin} is missing: run scripts/install-object-stores.sh (.ci/run does)`);
  return bin;
}

export interface RunningStore {
  /** The endpoint clients use: the counting proxy's. */
  endpoint: string;
  proxy: CountingProxy;
  /** Puts an object (creating nothing else). */
  put(bucket: string, key: string, body: Buffer): Promise<void>;
  close(): Promise<void>;
}

async function httpUp(port: number): Promise<boolean> {
  const res = await fetch(`http://127.0.0.1:${port}/`).catch(() => undefined);
  return res !== undefined;
}

/** Starts a server and waits until `port` answers HTTP; a server that exits first fails with its output. */
async function startServer(what: string, bin: string, args: string[], port: number, attempts: number): Promise<Processes> {
  const procs = new Processes();
  let log = "";
  const child = procs.spawn(bin, args, (t) => (log = (log + t).slice(-4000)));
  const exited = new Promise<never>((_, reject) => child.once("exit", (code) => reject(new Error(`${what} exited (${code}): ${log}`))));
  // Stopping it later is no failure.
  exited.catch(() => undefined);
  try {
    await Promise.race([waitFor(() => httpUp(port), what, attempts), exited]);
  } catch (e) {
    await procs.stopAll();
    throw e;
  }
  return procs;
}

const ADMIN_ACCESS_KEY = "damselfly-admin";
const ADMIN_SECRET_KEY = "damselfly-admin-secret-key-0123456789";

export interface SeaweedFs extends RunningStore {
  /** A reader's access key, created through SeaweedFS's IAM API, allowed to read every bucket. */
  accessKeyId: string;
  secretAccessKey: string;
  /** The S3 gateway's own endpoint, nothing counted in between (the s3 bench suite's). */
  gateway: string;
  /** Puts a file's content as an object, streamed (a large one is never held in memory). */
  putFile(bucket: string, key: string, path: string): Promise<void>;
}

/**
 * `weed server` (master, volume, filer, S3 gateway with its embedded IAM API) bootstrapped with
 * one admin identity (with any identity configured the gateway refuses anonymous and unknown
 * credentials). The bucket is created through the S3 API, and a reader's user, policy and
 * access key through the IAM API, as an operator would.
 */
export async function startSeaweedFs(dir: string, bucket: string): Promise<SeaweedFs> {
  const bin = objectStoreBin("weed");
  const ports: number[] = [];
  // One at a time: two free ports asked for together may be the same one.
  for (let i = 0; i < 8; i++) {
    let p = await freePort();
    while (ports.includes(p)) p = await freePort();
    ports.push(p);
  }
  const [master, masterGrpc, volume, volumeGrpc, filer, filerGrpc, s3, s3Grpc] = ports as [number, number, number, number, number, number, number, number];
  const config = join(dir, "s3.json");
  writeFileSync(config, JSON.stringify({ identities: [{ name: "admin", credentials: [{ accessKey: ADMIN_ACCESS_KEY, secretKey: ADMIN_SECRET_KEY }], actions: ["Admin", "Read", "List", "Tagging", "Write"] }] }));
  const flags = {
    dir,
    ip: "127.0.0.1",
    "ip.bind": "127.0.0.1",
    "master.port": master,
    "master.port.grpc": masterGrpc,
    "master.volumeSizeLimitMB": 256,
    "volume.port": volume,
    "volume.port.grpc": volumeGrpc,
    "volume.max": 8,
    filer: true,
    "filer.port": filer,
    "filer.port.grpc": filerGrpc,
    s3: true,
    "s3.port": s3,
    "s3.port.grpc": s3Grpc,
    "s3.config": config,
    "s3.iam.readOnly": false,
    // Iceberg and Lance catalogs listen on fixed ports by default: off.
    "s3.port.iceberg": 0,
    "s3.port.lance": 0,
  };
  const args = ["server", ...Object.entries(flags).map(([k, v]) => `-${k}=${v}`)];
  const procs = await startServer("SeaweedFS's S3 gateway", bin, args, s3, 2400);
  const admin = { accessKeyId: ADMIN_ACCESS_KEY, secretAccessKey: ADMIN_SECRET_KEY };
  const client = new S3Client({ region: "us-east-1", endpoint: `http://127.0.0.1:${s3}`, forcePathStyle: true, credentials: admin });
  let proxy: CountingProxy | undefined;
  let key: { AccessKeyId?: string | undefined; SecretAccessKey?: string | undefined } | undefined;
  try {
    // The filer may still be joining the master: retry what the store answers 5xx or cannot take yet.
    for (let i = 0; ; i++) {
      try {
        await client.send(new CreateBucketCommand({ Bucket: bucket }));
        break;
      } catch (e) {
        const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
        if (i >= 100 || (status !== undefined && status < 500)) throw e;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    const iam = new IAMClient({ region: "us-east-1", endpoint: `http://127.0.0.1:${s3}`, credentials: admin });
    await iam.send(new CreateUserCommand({ UserName: "reader" }));
    const policy = { Version: "2012-10-17", Statement: [{ Effect: "Allow", Action: ["s3:GetObject", "s3:ListBucket"], Resource: ["arn:aws:s3:::*"] }] };
    await iam.send(new PutUserPolicyCommand({ UserName: "reader", PolicyName: "read", PolicyDocument: JSON.stringify(policy) }));
    key = (await iam.send(new CreateAccessKeyCommand({ UserName: "reader" }))).AccessKey;
    iam.destroy();
    if (!key?.AccessKeyId || !key.SecretAccessKey) throw new Error("SeaweedFS's IAM API created no access key");
    proxy = await startCountingProxy(s3);
  } catch (e) {
    client.destroy();
    await procs.stopAll();
    throw e;
  }
  const endpoint = `http://127.0.0.1:${proxy.port}`;
  return {
    accessKeyId: key.AccessKeyId,
    secretAccessKey: key.SecretAccessKey,
    endpoint,
    gateway: `http://127.0.0.1:${s3}`,
    proxy,
    put: async (b, key, body) => {
      await client.send(new PutObjectCommand({ Bucket: b, Key: key, Body: body }));
    },
    putFile: async (b, key, path) => {
      await client.send(new PutObjectCommand({ Bucket: b, Key: key, Body: createReadStream(path), ContentLength: statSync(path).size }));
    },
    close: async () => {
      client.destroy();
      await proxy.close();
      await procs.stopAll();
    },
  };
}

/** Azurite's well-known development account (documented by Azure; not a secret). */
export const AZURITE_ACCOUNT = "devstoreaccount1";
export const AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/** Azurite's blob service (npm devDependency), with the container created through the Blob API. */
export async function startAzurite(dir: string, container: string): Promise<RunningStore> {
  const bin = new URL("../../node_modules/.bin/azurite-blob", import.meta.url).pathname;
  if (!existsSync(bin)) throw new Error(`${bin} is missing: npm ci installs azurite (a devDependency)`);
  const port = await freePort();
  const procs = await startServer("Azurite", bin, ["--blobHost", "127.0.0.1", "--blobPort", String(port), "--location", dir, "--silent", "--skipApiVersionCheck"], port, 1200);
  const service = new BlobServiceClient(`http://127.0.0.1:${port}/${AZURITE_ACCOUNT}`, new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY));
  await service.getContainerClient(container).create().catch(async (e: unknown) => {
    await procs.stopAll();
    throw e;
  });
  const proxy = await startCountingProxy(port);
  return {
    endpoint: `http://127.0.0.1:${proxy.port}/${AZURITE_ACCOUNT}`,
    proxy,
    put: async (c, key, body) => {
      await service.getContainerClient(c).getBlockBlobClient(key).uploadData(body);
    },
    close: async () => {
      await proxy.close();
      await procs.stopAll();
    },
  };
}

/** fake-gcs-server (GCS's JSON API), in memory, with the bucket created through the API. */
export async function startFakeGcs(bucket: string): Promise<RunningStore> {
  const bin = objectStoreBin("fake-gcs-server");
  const port = await freePort();
  const procs = await startServer("fake-gcs-server", bin, ["-scheme", "http", "-host", "127.0.0.1", "-port", String(port), "-backend", "memory", "-log-level", "error"], port, 1200);
  const storage = new Storage({ apiEndpoint: `http://127.0.0.1:${port}`, projectId: "test" });
  await storage.createBucket(bucket).catch(async (e: unknown) => {
    await procs.stopAll();
    throw e;
  });
  const proxy = await startCountingProxy(port);
  return {
    endpoint: `http://127.0.0.1:${proxy.port}`,
    proxy,
    put: async (b, key, body) => {
      await storage.bucket(b).file(key).save(body, { resumable: false, validation: false });
    },
    close: async () => {
      await proxy.close();
      await procs.stopAll();
    },
  };
}
