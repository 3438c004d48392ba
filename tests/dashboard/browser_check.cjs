// Drives headless Debian chromium with playwright-core (pinned, from ~/.cache/agifarm/npm; see
// scripts/setup.sh) over the dashboard of a running farm. Used by dashboard_browser_test.cpp.
//   node browser_check.cjs <playwright-core dir> <gateway port> <screenshot.png>
// Prints "ok <check>" per passed check; exits non-zero with "FAIL <check>: <why>" on the first failure.
"use strict";
const [pwDir, portArg, shot] = process.argv.slice(2);
const { chromium } = require(pwDir);
const base = `http://127.0.0.1:${portArg}`;
const fail = (what, why) => { console.log(`FAIL ${what}: ${why}`); process.exit(1); };
const ok = (what) => console.log(`ok ${what}`);

async function status() {
  const r = await fetch(base + "/agifarm/status");
  if (!r.ok) throw new Error("status HTTP " + r.status);
  return r.json();
}

(async () => {
  const browser = await chromium.launch({ executablePath: process.env.AGIFARM_CHROMIUM || "/usr/bin/chromium",
                                          args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(base + "/", { waitUntil: "load" });
    const s = await status();
    // every backend and pool appears with its state
    for (const b of s.backends) {
      await page.waitForSelector(`tr[data-backend="${b.name}"][data-state="ready"] .state.ok`, { timeout: 15000 })
        .catch(() => fail("backend " + b.name, "not shown as ready"));
      ok(`backend ${b.name} ready`);
    }
    for (const p of s.pools) {
      await page.waitForSelector(`[data-pool="${p.name}"] .chart .uplot`, { timeout: 15000 })
        .catch(() => fail("pool " + p.name, "no chart"));
      const aliases = await page.textContent(`[data-pool="${p.name}"] .aliases`);
      for (const a of p.aliases) if (!aliases.includes(a)) fail("pool " + p.name, `alias ${a} not shown (${aliases})`);
      ok(`pool ${p.name} with chart and aliases`);
    }
    // measured memory shown beside predicted
    await page.waitForFunction(() => (window.agifarmDashboard.status?.backends || []).some((b) => (b.memory || []).some((r) => r.measured)),
                               null, { timeout: 15000 }).catch(() => fail("memory", "no measured buffers"));
    ok("measured memory");
    // a request moves the charts (tokens/s above zero in the pool's series)
    const pool = s.pools[0].name;
    const r = await fetch(base + "/v1/chat/completions", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: pool, messages: [{ role: "user", content: "Hello" }], max_tokens: 16 }) });
    if (r.status !== 200) fail("request", "HTTP " + r.status);
    await page.waitForFunction((p) => {
      const c = window.agifarmDashboard.charts[p];
      return c && c.data[2].some((v) => v > 0) && c.data[1].some((v) => v > 0);
    }, pool, { timeout: 15000 }).catch(() => fail("charts", "requests/s and tokens/s did not move"));
    ok("a request moved the charts");
    // back button: select a backend (hash), go back
    const victim = s.backends.find((b) => b.kind === "llama-server");
    await page.click(`tr[data-backend="${victim.name}"] a.bk`);
    await page.waitForSelector(`[data-detail="${victim.name}"] pre.log`, { timeout: 5000 }).catch(() => fail("detail", "no log lines"));
    await page.goBack();
    await page.waitForFunction(() => !location.hash.startsWith("#backend="), null, { timeout: 5000 }).catch(() => fail("back", "hash kept"));
    ok("backend detail and back button");
    // a killed backend turns red, then green again
    process.kill(victim.pid, "SIGKILL");
    const row = `tr[data-backend="${victim.name}"]`;
    await page.waitForSelector(`${row} .state.bad`, { timeout: 15000 }).catch(() => fail("kill", "never red"));
    const red = await page.$eval(`${row} .state`, (e) => getComputedStyle(e).backgroundColor);
    if (!/^rgb\(207, 34, 46\)$/.test(red)) fail("kill", "colour " + red);
    ok(`killed backend red (${red})`);
    await page.waitForSelector(`${row}[data-state="ready"] .state.ok`, { timeout: 40000 }).catch(() => fail("restart", "never green again"));
    const green = await page.$eval(`${row} .state`, (e) => getComputedStyle(e).backgroundColor);
    ok(`restarted backend green (${green})`);
    // a narrow window: no horizontal overflow of the page itself
    await page.setViewportSize({ width: 380, height: 800 });
    await page.waitForTimeout(1200);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    if (overflow > 2) fail("narrow", `page ${overflow}px wider than a 380px window`);
    ok("narrow window");
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.waitForTimeout(300);
    await page.screenshot({ path: shot, fullPage: true });
    ok("screenshot " + shot);
    if (errors.length) fail("page errors", errors.join("; "));
    ok("no page errors");
  } finally {
    await browser.close();
  }
})().catch((e) => fail("browser", e.stack || String(e)));
