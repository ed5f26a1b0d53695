// The console's Commands page (issue 25) in Debian's chromium (headless, playwright-core): a
// real manager and scheduler (preheat-stack) and a daemon holding the command channel. Root
// signs in, opens Commands from the navigation, sees the daemon connected, sends it a
// set_log_level through the form, and reads the host's answer in the list once it is there;
// the daemon's logger really changed. The console is built from console/ first.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { Writable } from "node:stream";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger, type Logger } from "../../src/common/logger.js";
import { startDaemon, type DaemonHandle } from "../../src/daemon/daemon.js";
import { launchChromium, screenshot } from "../helpers/browser.js";
import { startPreheatStack, type PreheatStack } from "../helpers/preheat-stack.js";
import { cleanupTempDirs, testDaemonConfig } from "../helpers/swarm.js";

const root = join(import.meta.dirname, "..", "..");
const ROOT_PASSWORD = "root-pass-cc";

describe("console commands page in chromium", () => {
  let stack: PreheatStack;
  let daemon: DaemonHandle;
  let log: Logger;
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    const r = spawnSync(process.execPath, [join(root, "node_modules", "vite", "bin", "vite.js"), "build", "--config", join(root, "console", "vite.config.ts"), "--logLevel", "warn"], { cwd: root, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`console build failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
    stack = await startPreheatStack("console-cmd", ROOT_PASSWORD);
    log = createLogger({ component: "dfdaemon", level: "warn" }, new Writable({ write: (_c, _e, done) => done() }));
    daemon = await startDaemon(testDaemonConfig({ name: "console-peer", schedulers: [], overrides: { manager: { addr: `127.0.0.1:${stack.manager.grpcPort}` }, dynconfig: { refreshInterval: "24h" } } }), log);
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  });

  afterAll(async () => {
    await browser?.close();
    await daemon?.close();
    await stack?.close();
    cleanupTempDirs();
  });

  it("shows the connected daemon, sends it a command and shows its answer", async () => {
    const base = `http://127.0.0.1:${stack.manager.restPort}`;
    await page.goto(`${base}/`);
    await page.waitForURL(/\/signin\?next=/);
    await page.fill('input[name="name"]', "root");
    await page.fill('input[name="password"]', ROOT_PASSWORD);
    await page.click('button[type="submit"]');
    await page.waitForURL(`${base}/`);
    await page.click("header nav >> text=Commands");
    await page.waitForURL(`${base}/commands`);
    // The daemon joined the channel at its start; the page lists it.
    await expect.poll(async () => (await page.reload(), await page.textContent("#command-hosts")), { timeout: 15_000 }).toContain(daemon.hostId);

    await page.selectOption('select[name="command-type"]', "set_log_level");
    await page.fill('input[name="command-host"]', daemon.hostId);
    await page.selectOption('select[name="command-level"]', "debug");
    await page.click('form[aria-labelledby="send-command-title"] button[type="submit"]');
    await expect.poll(() => page.textContent("#commands"), { timeout: 30_000 }).toContain("console-peer: was warn");
    expect(await page.textContent("#commands")).toContain("set_log_level");
    await screenshot(page, "commands");
    expect(log.level).toBe("debug");
  });
});
