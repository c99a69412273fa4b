// Drives Earshot's settings page in Debian's headless Chromium (playwright-core, no downloaded
// browser). Run by tests/web_browser.rs, which starts earshot and checks the server side:
//
//   node page_test.mjs BASE_URL SCREENSHOT_DIR
//
// Steps, each with its own time limit: the live stream connects; the level graph moves (its
// data-points count grows and the LAF readout reads in dB); a glass_break detection appears in
// the event list; the glass sensitivity slider moved to 80 is saved; the aggression test button
// brings back a test event. Prints one JSON object with what it saw; exits 1 on the first
// failed step (naming it), after a screenshot of the page as it was.

import { chromium } from "playwright-core";

const [base, shots] = process.argv.slice(2);
if (!base || !shots) {
  console.error("usage: node page_test.mjs BASE_URL SCREENSHOT_DIR");
  process.exit(2);
}

const seen = {};
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
const consoleErrors = [];
page.on("console", (m) => {
  if (m.type() === "error") consoleErrors.push(m.text());
});
// The page must work offline: any request off the server's origin fails the test.
const origin = new URL(base).origin;
const offsite = [];
page.on("request", (r) => {
  if (!r.url().startsWith(origin) && !r.url().startsWith("data:")) offsite.push(r.url());
});

async function step(name, fn) {
  try {
    await fn();
  } catch (e) {
    await page.screenshot({ path: `${shots}/failed-${name}.png`, fullPage: true }).catch(() => {});
    console.log(JSON.stringify({ failed: name, error: String(e), seen, consoleErrors, offsite }));
    await browser.close();
    process.exit(1);
  }
}

await step("load", async () => {
  await page.goto(base, { waitUntil: "load", timeout: 20000 });
  await page.waitForFunction(
    () => document.querySelector("#live-state")?.textContent.trim() === "live",
    null,
    { timeout: 20000 },
  );
});

await step("level-graph-moves", async () => {
  const points = () =>
    page.$eval("#level-graph", (c) => Number(c.getAttribute("data-points") || 0));
  await page.waitForFunction(
    () => Number(document.querySelector("#level-graph").getAttribute("data-points") || 0) > 0,
    null,
    { timeout: 15000 },
  );
  const before = await points();
  await page.waitForFunction(
    (b) => Number(document.querySelector("#level-graph").getAttribute("data-points")) >= b + 10,
    before,
    { timeout: 15000 },
  );
  seen.level_points = [before, await points()];
  seen.level_now = (await page.textContent("#level-now")).trim();
  if (!/dB/.test(seen.level_now)) throw new Error(`#level-now reads ${seen.level_now}`);
});

await step("glass-event-listed", async () => {
  const li = page.locator('#events li[data-event="detection_start"][data-class="glass_break"]');
  await li.first().waitFor({ timeout: 40000 });
  seen.glass_event = (await li.first().textContent()).replace(/\s+/g, " ").trim();
  await page.screenshot({ path: `${shots}/1-glass-break-detected.png`, fullPage: true });
});

await step("slider-saved", async () => {
  const slider = page.locator("#sens-glass_break");
  await slider.waitFor({ state: "visible" });
  await page.waitForFunction(() => !document.querySelector("#sens-glass_break").disabled);
  seen.slider_before = await slider.inputValue();
  // What a drag does: the value changes with input events, then change on release.
  await slider.evaluate((el) => {
    el.value = "80";
    el.dispatchEvent(new Event("input", { bubbles: true }));
    el.dispatchEvent(new Event("change", { bubbles: true }));
  });
  await page.waitForFunction(
    () => /^saved/.test(document.querySelector("#save-state")?.textContent.trim() ?? ""),
    null,
    { timeout: 10000 },
  );
  seen.save_state = (await page.textContent("#save-state")).trim();
  seen.slider_after = await slider.inputValue();
});

await step("aggression-test-event", async () => {
  await page.click("#test-aggression");
  const li = page.locator(
    '#events li[data-event="detection_start"][data-class="aggression"][data-test="true"]',
  );
  await li.first().waitFor({ timeout: 10000 });
  seen.test_event = (await li.first().textContent()).replace(/\s+/g, " ").trim();
  await page.screenshot({ path: `${shots}/2-after-slider-and-test.png`, fullPage: true });
});

seen.window_earshot = await page.evaluate(() => ({ ...window.earshot }));
await browser.close();
console.log(JSON.stringify({ ok: true, seen, consoleErrors, offsite }));
process.exit(offsite.length ? 1 : 0);
