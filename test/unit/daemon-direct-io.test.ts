// storage.directIO: O_DIRECT where the filesystem takes it by default ("auto"), required
// ("always"), or never (through the page cache, as Dragonfly's client writes); each mode
// reaches the native store.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/common/config.js";
import { silentLogger } from "../../src/common/logger.js";
import { DaemonConfigSchema, resolveDaemonConfig } from "../../src/daemon/config.js";
import { Storage } from "../../src/daemon/storage/storage.js";
import { openTaskStore } from "../../src/native/index.js";

const directIO = (yaml: string) => resolveDaemonConfig(parseConfig(DaemonConfigSchema, yaml), { dataDir: "/nonexistent" }).storage.directIO;
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

type Mode = "auto" | "always" | "never";
const ID = "a".repeat(64);

/** A new task's I/O mode under `directIO`. */
async function ioModeOf(directIO: Mode): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "damselfly-directio-"));
  dirs.push(dir);
  const storage = await Storage.open({ diskDir: dir, keep: false, directIO, log: silentLogger() });
  const task = await storage.open({ id: ID, url: "http://origin/blob", filteredQueryParams: [], requestHeader: {}, contentLength: 8 << 20, pieceLength: 4 << 20, pieceCount: 2, responseHeader: {}, tier: "disk" });
  return task.ioMode;
}

describe("storage.directIO", () => {
  it("resolves: O_DIRECT where the filesystem takes it unless forced either way", () => {
    expect(directIO("")).toBe("auto");
    expect(directIO("seedPeer:\n  enable: true\n")).toBe("auto");
    expect(directIO("seedPeer:\n  enable: true\nstorage:\n  directIO: never\n")).toBe("never");
    expect(directIO("storage:\n  directIO: always\n")).toBe("always");
    expect(() => directIO("storage:\n  directIO: sometimes\n")).toThrow(/storage\.directIO/);
  });

  it("reaches the native store", async () => {
    expect(await ioModeOf("never")).toBe("buffered");
    // "auto" is whatever the filesystem gives an unforced store.
    const probe = mkdtempSync(join(tmpdir(), "damselfly-directio-probe-"));
    dirs.push(probe);
    const unforced = openTaskStore({ dataDir: probe, taskId: "b".repeat(64), contentLength: 8 << 20, pieceLength: 4 << 20 }).info().ioMode;
    expect(await ioModeOf("auto")).toBe(unforced);
    if (unforced === "direct") expect(await ioModeOf("always")).toBe("direct");
  });
});
