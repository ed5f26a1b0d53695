// The web console as a person uses it, in Debian's chromium (headless, playwright-core), against
// the stack `damselfly up` runs: manager on PGlite, a real scheduler, seed peer and peer, and
// the demo origin. Signs in with the password file the manager wrote, reads the overview, syncs
// the peers, edits a cluster's limits, preheats the demo file and follows the job until it
// succeeds (and a missing file until it fails), finds where the file is cached and deletes it,
// creates a personal access token that the open API then accepts, a tenant, and a read-only user
// who gets the 403 page for a preheat, and finds all of it in the audit log. It cancels a
// preheat stalled on its origin from the job's page and retries it, subscribes a webhook that
// hears of the cancel, follows its delivery log and redelivers the attempt the receiver refused;
// the read-only user is offered none of these actions, and the manager refuses them anyway. The console is built from console/ first, so the test runs what the
// sources say. A screenshot of each page lands in test-results/console/, and of the page on
// screen when a test fails (FAILED-<test>.png).
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { startStack, type Stack } from "../../src/up/stack.js";
import { launchChromium, screenshot } from "../helpers/browser.js";
import { makeContent, startOrigin, type Origin } from "../helpers/origin.js";

const root = join(import.meta.dirname, "..", "..");
const BUDGET_BYTES = 300 * 1024;
/** How long a preheat of the demo file (32 MiB over loopback) may take on a loaded CI host. */
const PREHEAT_MS = 120_000;

function buildConsole(): void {
  const r = spawnSync(process.execPath, [join(root, "node_modules", "vite", "bin", "vite.js"), "build", "--config", join(root, "console", "vite.config.ts"), "--logLevel", "warn"], { cwd: root, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`console build failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
}

describe("web console in chromium", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "console-"));
  let stack: Stack;
  let browser: Browser;
  let page: Page;
  let base: string;
  let rootPassword: string;
  /** An origin whose body stops after 1 MiB until released: a preheat of it runs until canceled. */
  let stalled: Origin;
  /** A webhook receiver refusing the first delivery (500), taking the others; what it got, in order. */
  let receiver: Server;
  const received: Array<{ event: string; delivery: string; status: number }> = [];

  const signIn = async (name: string, password: string) => {
    await page.goto(`${base}/`);
    await page.waitForURL(/\/signin\?next=/);
    await page.fill('input[name="name"]', name);
    await page.fill('input[name="password"]', password);
    await page.click('button[type="submit"]');
    await page.waitForURL(`${base}/`);
    await expect.poll(() => page.textContent("#me-name")).toBe(name);
  };
  const signOut = async () => {
    await page.click("text=Sign out");
    await page.waitForURL(/\/signin/);
  };
  const nav = async (label: string, path: string) => {
    await page.click(`header nav >> text=${label}`);
    await page.waitForURL(`${base}${path}`);
  };

  beforeAll(async () => {
    buildConsole();
    browser = await launchChromium();
    // One attempt per delivery: a refused one fails at once and waits for a redelivery.
    stack = await startStack({ dataDir, peers: 1, preferDefaultPorts: false, webhookMaxAttempts: 1 });
    stalled = await startOrigin(makeContent(8 << 20), "/stalled.bin");
    stalled.framing = "chunked";
    stalled.holdAfter = 1 << 20;
    receiver = createServer((req, res) => {
      req.resume();
      const status = received.length === 0 ? 500 : 200;
      received.push({ event: String(req.headers["x-damselfly-event"]), delivery: String(req.headers["x-damselfly-delivery"]), status });
      res.writeHead(status).end();
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    base = stack.manager.apiUrl;
    rootPassword = readFileSync(stack.manager.credentialsFile ?? "", "utf8").trim();
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  });

  beforeEach(({ task, onTestFailed }) => {
    onTestFailed(async () => {
      if (page && !page.isClosed()) console.warn(`console-browser: screenshot of the failure in ${await screenshot(page, `FAILED-${task.name}`)}`);
    });
  });

  afterAll(async () => {
    await browser?.close();
    await stack?.close();
    stalled?.release();
    await stalled?.goOffline();
    receiver?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("is what `up` prints as the console, and asks for a sign-in", async () => {
    expect(stack.manager.consoleUrl).toBe(`${base}/`);
    await page.goto(`${base}/jobs`);
    // A client route loads the app, which sends an anonymous visitor to sign in and back.
    await page.waitForURL(`${base}/signin?next=%2Fjobs`);
    await page.fill('input[name="name"]', "root");
    await page.fill('input[name="password"]', "not-the-password");
    await page.click('button[type="submit"]');
    await expect.poll(() => page.textContent('[role="alert"]')).toBe("incorrect name or password");
    await screenshot(page, "signin");
    await page.fill('input[name="password"]', rootPassword);
    await page.click('button[type="submit"]');
    await page.waitForURL(`${base}/jobs`);
    await expect.poll(() => page.textContent("#me-name")).toBe("root");
  });

  it("shows the running stack on the overview, peers after a sync", async () => {
    await nav("Overview", "/");
    await page.locator("#clusters").getByText("cluster-1").waitFor();
    const scheduler = page.locator("#schedulers tbody tr").first();
    await expect.poll(() => scheduler.locator("[data-state]").getAttribute("data-state")).toBe("active");
    // Seed peers and peers are the hosts the schedulers report; Sync peers asks them now.
    await page.click("text=Sync peers");
    const peer = page.locator('#peers tr[data-host="peer-1"]');
    await peer.waitFor({ timeout: 60_000 });
    expect(await peer.locator("[data-state]").getAttribute("data-state")).toBe("active");
    const seed = page.locator('#seed-peers tr[data-host="seed-peer"]');
    expect(await seed.locator("[data-state]").getAttribute("data-state")).toBe("active");
    expect(await page.locator('#peers tr[data-host="seed-peer"]').count()).toBe(0);
    // The sync itself was a job, and it succeeded.
    await expect.poll(() => page.textContent('[data-count="SUCCESS"]'), { timeout: 10_000 }).toBe("1");
    await screenshot(page, "overview");
  });

  it("edits a cluster's limits, validated, and the manager keeps them", async () => {
    await nav("Overview", "/");
    await page.locator("#clusters").getByText("cluster-1").click();
    await page.waitForURL(`${base}/clusters/1`);
    const limit = page.locator('input[name="scheduler_cluster_config.candidate_parent_limit"]');
    await expect.poll(() => limit.inputValue()).toBe("3");
    // Out of the schema's range (1–20): the browser refuses to send it.
    await limit.fill("25");
    expect(await page.locator('input[name="scheduler_cluster_config.candidate_parent_limit"]:out-of-range').count()).toBe(1);
    await limit.fill("5");
    await page.fill('input[name="seed_peer_cluster_config.load_limit"]', "3000");
    await page.click("text=Save limits");
    await page.locator("#cluster-config >> text=Saved.").waitFor();
    await screenshot(page, "cluster");
    // Hosts of the cluster are listed with it.
    expect(await page.locator("#cluster-members").textContent()).toContain("peer-1");
    await page.reload();
    await expect.poll(() => limit.inputValue()).toBe("5");
    const session = await page.evaluate<string | null>('localStorage.getItem("damselfly.session")');
    const token = (JSON.parse(session ?? "{}") as { token?: string }).token ?? "";
    const stored = (await (await fetch(`${base}/api/v1/clusters/1`, { headers: { authorization: `Bearer ${token}` } })).json()) as Record<string, Record<string, unknown>>;
    // The keys the form changed, and the ones it does not show left as they were.
    expect(stored.scheduler_cluster_config).toEqual({ candidate_parent_limit: 5, filter_parent_limit: 15, job_rate_limit: 10 });
    expect(stored.seed_peer_cluster_config).toEqual({ load_limit: 3000 });
    expect(stored.peer_cluster_config).toEqual({ load_limit: 200 });
  });

  let jobId = 0;
  it("preheats the demo file into the seed peer and follows the job until it succeeds", async () => {
    await nav("Jobs", "/jobs");
    await page.fill('input[name="url"]', stack.demo.url);
    await page.selectOption('select[name="cluster"]', { label: "cluster-1" });
    await page.fill('input[name="bio"]', "from the console test");
    await screenshot(page, "jobs-new-preheat");
    await page.getByRole("button", { name: "Preheat", exact: true }).click();
    await page.waitForURL(/\/jobs\/\d+$/);
    jobId = Number(/\/jobs\/(\d+)$/.exec(page.url())?.[1]);
    const state = page.locator("[data-job-state]");
    await page.locator('[data-job-state="SUCCESS"], [data-job-state="FAILURE"]').waitFor({ timeout: PREHEAT_MS });
    expect(await state.getAttribute("data-job-state"), (await page.textContent("main")) ?? "").toBe("SUCCESS");
    // The seed peer holds the demo file now.
    const cached = page.locator("table.tasks", { hasText: "Cached on" });
    expect(await cached.textContent()).toContain(stack.demo.url);
    await screenshot(page, "job-detail");

    await page.click(".crumbs >> text=Jobs");
    const row = page.locator(`#jobs tr[data-job="${jobId}"]`);
    await row.waitFor();
    expect(await row.locator("[data-state]").getAttribute("data-state")).toBe("SUCCESS");
    expect(await row.textContent()).toContain(stack.demo.url);
    await screenshot(page, "jobs");
  });

  it("finds where the preheated file is cached and deletes it from every peer", async () => {
    await nav("Tasks", "/tasks");
    await page.fill('input[name="task"]', stack.demo.url);
    await page.click('button[type="submit"]:has-text("Find")');
    const seed = page.locator('#task-holders tr[data-host="seed-peer"]');
    await seed.waitFor({ timeout: 60_000 });
    expect(await seed.textContent()).toContain("seed peer");
    expect(await seed.textContent()).toContain("yes");
    expect(await page.textContent("#task-id")).toMatch(/^[0-9a-f]{64}$/);
    await screenshot(page, "tasks");
    page.once("dialog", (d) => void d.accept());
    await page.click("text=Delete from every peer");
    await page.locator("#task-deleted").waitFor({ timeout: 60_000 });
    expect(await page.textContent("#task-deleted")).toContain("seed-peer");
    // Asked again after the delete: no peer holds it any more.
    await page.locator("text=No peer holds this task.").waitFor({ timeout: 60_000 });
  });

  it("follows a preheat of a missing file until it fails, with the reason", async () => {
    await nav("Jobs", "/jobs");
    await page.fill('input[name="url"]', new URL("/no-such-file.bin", stack.demo.url).href);
    await page.getByRole("button", { name: "Preheat", exact: true }).click();
    await page.waitForURL(/\/jobs\/\d+$/);
    await page.locator('[data-job-state="SUCCESS"], [data-job-state="FAILURE"]').waitFor({ timeout: PREHEAT_MS });
    expect(await page.locator("[data-job-state]").getAttribute("data-job-state")).toBe("FAILURE");
    expect(await page.locator(".outcome .error").first().textContent()).toMatch(/failed/);
    await screenshot(page, "job-detail-failed");
  });

  it("subscribes a webhook to job events and deletes another", async () => {
    await nav("Webhooks", "/webhooks");
    const create = async (name: string, url: string) => {
      await page.fill('input[name="webhook-name"]', name);
      await page.fill('input[name="webhook-url"]', url);
      await page.fill('input[name="webhook-secret"]', "hook-secret-1");
      await page.click("text=Create webhook");
      await page.locator(`#webhooks tr[data-webhook="${name}"]`).waitFor();
    };
    // job.succeeded and job.failed are chosen by default; only failures here.
    await page.uncheck('input[name="event-job.succeeded"]');
    await create("ci-failures", `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`);
    expect(await page.locator('#webhooks tr[data-webhook="ci-failures"]').textContent()).toContain("job.failed");
    await create("old-hook", "http://127.0.0.1:9/hooks");
    await screenshot(page, "webhooks");
    page.once("dialog", (d) => void d.accept());
    await page.locator('#webhooks tr[data-webhook="old-hook"]').getByRole("button", { name: "Delete" }).click();
    await expect.poll(() => page.locator('#webhooks tr[data-webhook="old-hook"]').count()).toBe(0);
    expect(await page.locator('#webhooks tr[data-webhook="ci-failures"]').count()).toBe(1);
  });

  let canceledId = 0;
  it("cancels a preheat running on a stalled origin, and retries it as a new job", async () => {
    await nav("Jobs", "/jobs");
    await page.fill('input[name="url"]', stalled.url());
    await page.getByRole("button", { name: "Preheat", exact: true }).click();
    await page.waitForURL(/\/jobs\/\d+$/);
    canceledId = Number(/\/jobs\/(\d+)$/.exec(page.url())?.[1]);
    // Running: the seed peer is fetching the file, which stops after its first MiB.
    await expect.poll(() => stalled.requests, { timeout: PREHEAT_MS }).toBeGreaterThan(0);
    expect(await page.locator("[data-job-state]").getAttribute("data-job-state")).toBe("PENDING");
    expect(await page.getByRole("button", { name: "Retry" }).count()).toBe(0);
    page.once("dialog", (d) => void d.accept());
    await page.getByRole("button", { name: "Cancel job" }).click();
    await page.locator('[data-job-state="FAILURE"]').waitFor();
    expect(await page.textContent("#job-canceled")).toContain("job canceled by root");
    expect(await page.getByRole("button", { name: "Cancel job" }).count()).toBe(0);
    await screenshot(page, "job-canceled");

    await page.getByRole("button", { name: "Retry" }).click();
    await page.waitForURL((u) => /^\/jobs\/\d+$/.test(u.pathname) && u.pathname !== `/jobs/${canceledId}`);
    const retryId = Number(/\/jobs\/(\d+)$/.exec(page.url())?.[1]);
    expect(retryId).toBeGreaterThan(canceledId);
    expect(await page.textContent("#job-retry-of")).toBe(`#${canceledId}`);
    expect(await page.locator("#job-facts").textContent()).toContain("cluster-1");
    expect(await page.textContent("pre.json")).toContain(stalled.url());
    await screenshot(page, "job-retry");
    // The retry stalls as the first did; canceled too, it leaves nothing running.
    page.once("dialog", (d) => void d.accept());
    await page.getByRole("button", { name: "Cancel job" }).click();
    await page.locator('[data-job-state="FAILURE"]').waitFor();
    // The old job is as it was canceled.
    await page.click("#job-retry-of a");
    await page.waitForURL(`${base}/jobs/${canceledId}`);
    expect(await page.textContent("#job-canceled")).toContain("job canceled by root");
  });

  it("logs the webhook's deliveries of the cancels, and redelivers the refused one", async () => {
    await nav("Webhooks", "/webhooks");
    await page.click('#webhooks tr[data-webhook="ci-failures"] a');
    await page.waitForURL(/\/webhooks\/\d+$/);
    const rows = page.locator("#deliveries tbody tr");
    // Two job.failed (the cancels); the receiver refused the first one sent, took the second.
    const attributes = async (of: typeof rows, name: string) => Promise.all((await of.all()).map((l) => l.getAttribute(name)));
    await expect.poll(async () => (await attributes(rows.locator("[data-state]"), "data-state")).sort(), { timeout: 60_000 }).toEqual(["FAILURE", "SUCCESS"]);
    expect(await attributes(rows, "data-event")).toEqual(["job.failed", "job.failed"]);
    const refused = rows.filter({ has: page.locator('[data-state="FAILURE"]') });
    expect(await refused.textContent()).toContain("500");
    expect(await refused.locator("[data-attempts]").getAttribute("data-attempts")).toBe("1");
    await screenshot(page, "webhook-deliveries");
    const deliveryId = await refused.getAttribute("data-delivery");
    await refused.getByRole("button", { name: "Redeliver" }).click();
    const again = page.locator(`#deliveries tr[data-delivery="${deliveryId}"]`);
    await expect.poll(() => again.locator("[data-state]").getAttribute("data-state"), { timeout: 60_000 }).toBe("SUCCESS");
    expect(await again.textContent()).toContain("200");
    expect(await page.getByRole("button", { name: "Redeliver" }).count()).toBe(0);
    // The receiver got the refused delivery again, under the same delivery id.
    expect(received.map((r) => r.status)).toEqual([500, 200, 200]);
    expect(received[2]?.delivery).toBe(received[0]?.delivery);
  });

  it("creates a personal access token, shows it once, and the open API accepts it", async () => {
    await nav("Access tokens", "/tokens");
    await page.fill('input[name="token-name"]', "harbor");
    await page.fill('input[name="token-bio"]', "preheat from Harbor");
    await page.click("text=Create token");
    const value = (await page.locator("#new-token-value").textContent()) ?? "";
    expect(value.length).toBeGreaterThanOrEqual(40);
    const row = page.locator('#tokens tr[data-token="harbor"]');
    await row.waitFor();
    await screenshot(page, "tokens-created");
    expect(await row.textContent()).toContain("job");

    // The token works where Harbor uses it, with the scope it was given and no other.
    const asPat = (path: string) => fetch(`${base}${path}`, { headers: { authorization: `Bearer ${value}` } });
    expect((await asPat("/oapi/v1/jobs")).status).toBe(200);
    expect((await asPat("/oapi/v1/clusters")).status).toBe(403);

    // Shown once: after a reload only its name is left.
    await page.reload();
    await row.waitFor();
    expect(await page.locator("#new-token").count()).toBe(0);
    expect(await page.content()).not.toContain(value);
    await expect.poll(() => row.textContent()).toMatch(/s ago|min ago/);
  });

  it("gives a read-only user the overview, and the 403 page for a preheat", async () => {
    await nav("Tenants", "/tenants");
    await page.fill('input[name="tenant-name"]', "team-a");
    await page.click("text=Create tenant");
    await page.locator('#tenants tr[data-tenant="team-a"]').waitFor();
    await screenshot(page, "tenants");

    await nav("Users & roles", "/users");
    await page.fill('input[name="user-name"]', "viewer");
    await page.fill('input[name="email"]', "viewer@example.com");
    await page.fill('input[name="user-password"]', "viewer-pass-1");
    await page.selectOption('select[name="role"]', "guest");
    await page.click("text=Create user");
    const row = page.locator('#users tr[data-user="viewer"]');
    await row.waitFor();
    expect(await row.textContent()).toContain("guest");
    expect(await page.locator("#roles").textContent()).toContain("read everything");
    await screenshot(page, "users");

    await signOut();
    await signIn("viewer", "viewer-pass-1");
    // Reading is within the guest role.
    await page.locator("#schedulers tbody tr").first().waitFor();
    await nav("Jobs", "/jobs");
    await page.fill('input[name="url"]', stack.demo.url);
    await page.getByRole("button", { name: "Preheat", exact: true }).click();
    await page.waitForURL(`${base}/403`);
    expect(await page.textContent("#forbidden-reason")).toBe("permission denied: * jobs");
    expect(await page.textContent("#my-roles")).toBe("guest");
    expect(await page.textContent("main")).toContain("POST /api/v1/jobs");
    await screenshot(page, "forbidden");
    // Back leads to where the refused action was.
    await page.click("text=← Back");
    await page.waitForURL(`${base}/jobs`);
    // Reading tenants is root's: not in the guest's menu, and refused when opened anyway.
    expect(await page.locator("header nav >> text=Tenants").count()).toBe(0);
    await page.goto(`${base}/tenants`);
    await page.waitForURL(`${base}/403`);
    expect(await page.textContent("#forbidden-reason")).toBe("only root may do this");

    // Jobs and webhooks are read, not changed: no action is offered…
    await page.goto(`${base}/jobs/${canceledId}`);
    await page.locator('[data-job-state="FAILURE"]').waitFor();
    expect(await page.textContent("#job-canceled")).toContain("job canceled by root");
    expect(await page.locator("#job-actions").count()).toBe(0);
    await nav("Webhooks", "/webhooks");
    await page.locator('#webhooks tr[data-webhook="ci-failures"]').waitFor();
    expect(await page.locator("form", { hasText: "New webhook" }).count()).toBe(0);
    expect(await page.getByRole("button", { name: "Delete" }).count()).toBe(0);
    await page.click('#webhooks tr[data-webhook="ci-failures"] a');
    await page.locator("#deliveries tbody tr").first().waitFor();
    expect(await page.getByRole("button", { name: "Redeliver" }).count()).toBe(0);
    await screenshot(page, "webhook-deliveries-guest");
    // …and the manager refuses them when asked anyway.
    const session = await page.evaluate<string | null>('localStorage.getItem("damselfly.session")');
    const token = (JSON.parse(session ?? "{}") as { token?: string }).token ?? "";
    for (const path of [`/api/v1/jobs/${canceledId}/retry`, `/api/v1/jobs/${canceledId}/cancel`]) {
      const r = await fetch(`${base}${path}`, { method: "POST", headers: { authorization: `Bearer ${token}` } });
      expect(r.status, path).toBe(403);
    }
    await signOut();
  });

  it("shows who did what in the audit log", async () => {
    await signIn("root", rootPassword);
    await nav("Audit log", "/audits");
    const table = page.locator("#audits");
    await table.waitFor();
    const refused = table.locator("tr", { hasText: "viewer" }).filter({ hasText: "/api/v1/jobs" });
    expect(await refused.first().textContent()).toMatch(/POST.*\/api\/v1\/jobs.*403.*FAILURE/);
    expect(await table.locator("tr", { hasText: "/api/v1/personal-access-tokens" }).first().textContent()).toMatch(/root.*POST.*200.*SUCCESS/);
    await screenshot(page, "audits");
    // Filtered to one actor, only that actor's records are left.
    await page.fill('input[name="actor"]', "viewer");
    await page.press('input[name="actor"]', "Enter");
    await expect.poll(async () => (await table.locator("tbody tr").allTextContents()).every((t) => t.includes("viewer"))).toBe(true);
  });

  it("loads under 300 KB of JS gzipped on a first visit", async () => {
    const context = await browser.newContext();
    try {
      const fresh = await context.newPage();
      const scripts: Array<Promise<{ url: string; bytes: number; encoding: string }>> = [];
      fresh.on("response", (r) => {
        if (r.request().resourceType() !== "script") return;
        scripts.push(r.request().sizes().then(async (s) => ({ url: r.url(), bytes: s.responseBodySize, encoding: (await r.allHeaders())["content-encoding"] ?? "identity" })));
      });
      await fresh.goto(`${base}/`, { waitUntil: "networkidle" });
      await fresh.locator('input[name="name"]').waitFor();
      const loaded = await Promise.all(scripts);
      expect(loaded.length).toBeGreaterThan(0);
      // Sent compressed, as measured: what the build's budget counts is what travels.
      for (const s of loaded) expect(s.encoding, s.url).toMatch(/^(br|gzip)$/);
      const total = loaded.reduce((n, s) => n + s.bytes, 0);
      const budget = JSON.parse(readFileSync(join(root, "dist", "console", "budget.json"), "utf8")) as { firstLoadJsGzipBytes: number };
      console.info(`console-browser: first load fetched ${loaded.length} script(s), ${(total / 1024).toFixed(1)} KB on the wire; the build measured ${(budget.firstLoadJsGzipBytes / 1024).toFixed(1)} KB gzipped`);
      expect(total).toBeLessThan(BUDGET_BYTES);
      expect(budget.firstLoadJsGzipBytes).toBeLessThan(BUDGET_BYTES);
    } finally {
      await context.close();
    }
  });
});
