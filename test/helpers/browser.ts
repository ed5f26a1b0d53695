// A real browser for the console's tests: Debian's chromium (apt-get install chromium; .ci/run
// installs it), headless, driven by playwright-core. A missing chromium fails the test that
// needs it with the way to get one; it never skips.
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
/** Where page screenshots go (test-results/ is ignored by git). */
export const SCREENSHOT_DIR = join(import.meta.dirname, "..", "..", "test-results", "console");

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`chromium not found at ${CHROMIUM}: install Debian's chromium (apt-get install -y chromium, as .ci/run does) or set CHROMIUM_PATH to a Chromium binary`);
  }
  return chromium.launch({ executablePath: CHROMIUM, headless: true });
}

/** A full-page screenshot as test-results/console/<name>.png; returns its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const path = join(SCREENSHOT_DIR, `${name.replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^-|-$/g, "")}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}
