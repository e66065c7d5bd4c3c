// End-to-end tests of the dashboard in Debian's headless Chromium, against a real Herald (debug
// build) with the WuzAPI simulator, both on free ports, and a throwaway database:
//
//   node e2e/run.mjs        (scripts/test-web.sh builds what it needs first)
//
// Sign up and sign in; link a number and watch its QR code until the simulated phone scans it;
// create a template; create a campaign and watch its progress bar reach completed without a
// reload; export its CSV; an incoming simulator message shows in Chats unread; a reply reaches
// the simulator. Every screen is saved under target/screenshots/.
//
// Herald's and the simulator's logs: target/e2e-herald.log, target/e2e-simulator.log.
// Settings: HERALD_BIN (default target/debug/herald), CHROMIUM (default /usr/bin/chromium),
// HERALD_TEST_DATABASE_URL (a server where databases may be created; default the local postgres).
import { spawn, execFileSync } from "node:child_process";
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import { chromium } from "playwright-core";

const root = resolve(new URL("../..", import.meta.url).pathname);
const herald = process.env.HERALD_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(root, "target"), "debug", "herald");
const shots = join(root, "target", "screenshots");
const adminUrl = process.env.HERALD_TEST_DATABASE_URL ?? "postgres://postgres:postgres@127.0.0.1:5432/postgres";
const dbName = `herald_e2e_${randomBytes(6).toString("hex")}`;
const dbUrl = adminUrl.replace(/\/[^/?]*(\?|$)/, `/${dbName}$1`);
const ADMIN = "e2e-admin-token";
const STEP_MS = 60_000;
// the budgets of docs/dashboard.md: first screen, live progress behind the API, a recipients page
const FIRST_SCREEN_MS = 1000;
const PROGRESS_LAG_MS = 1000;
// "fast": a debug build on a shared CI machine; typically 300–800 ms
const PAGE_MS = 2000;

// this run's screenshots only (a failed step's picture from an earlier run would mislead)
rmSync(shots, { recursive: true, force: true });
mkdirSync(shots, { recursive: true });
const children = [];
const scratch = mkdtempSync(join(tmpdir(), "herald-e2e-"));
let failures = 0;

function log(...a) {
  console.log("e2e:", ...a);
}

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

function psql(sql) {
  execFileSync("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", adminUrl, "-c", sql], { stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, PGCONNECT_TIMEOUT: "5" } });
}

/** Starts a process; resolves with its output once `ready` matches a line of it. */
function start(name, args, env, ready) {
  return new Promise((ok, fail) => {
    const child = spawn(herald, args, { cwd: scratch, env, stdio: ["ignore", "pipe", "pipe"] });
    children.push(child);
    // the whole output stays in target/e2e-<name>.log for when a step fails
    const file = createWriteStream(join(root, "target", `e2e-${name}.log`));
    child.stdout.pipe(file);
    child.stderr.pipe(file);
    let out = "";
    const timer = setTimeout(() => fail(new Error(`${name} did not start:\n${out}`)), STEP_MS);
    const onData = (d) => {
      out += d;
      const m = out.match(ready);
      if (m) {
        clearTimeout(timer);
        ok(m);
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", (code) => {
      clearTimeout(timer);
      fail(new Error(`${name} exited (${code}):\n${out}`));
    });
  });
}

async function simJson(sim, path, body) {
  const res = await fetch(`${sim}${path}`, {
    method: body ? "POST" : "GET",
    headers: { "content-type": "application/json", authorization: ADMIN },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status} ${await res.text()}`);
  return res.json();
}

async function until(what, check, ms = STEP_MS) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function test(name, f) {
  const t0 = Date.now();
  try {
    await f();
    log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failures++;
    log(`FAIL ${name}: ${e.stack ?? e}`);
    await globalThis.failShot?.(name.replace(/\W+/g, "-"));
    throw e;
  }
}

async function main() {
  psql(`CREATE DATABASE ${dbName}`);
  const simPort = await freePort();
  const sim = `http://127.0.0.1:${simPort}`;
  const baseEnv = { PATH: process.env.PATH, HOME: process.env.HOME ?? scratch, RUST_LOG: "info,sqlx=warn", HERALD_WUZAPI_ADMIN_TOKEN: ADMIN };
  await start("simulator", ["sim", "--listen", `127.0.0.1:${simPort}`], baseEnv, /listening|Listening|127\.0\.0\.1:\d+/);
  await until("simulator answers", async () => (await fetch(`${sim}/sim/stats`).catch(() => null))?.ok);
  const [, base] = await start(
    "herald",
    ["serve"],
    {
      ...baseEnv,
      DATABASE_URL: dbUrl,
      HERALD_LISTEN: "127.0.0.1:0",
      HERALD_WUZAPI_URL: sim,
      HERALD_WEB_DIR: join(root, "web", "dist"),
      HERALD_DEFAULT_PLAN: "unlimited",
      HERALD_ENV: "development",
    },
    /listening on (http:\/\/[0-9.:]+)/,
  );
  log(`herald on ${base}, simulator on ${sim}, database ${dbName}`);

  const profile = mkdtempSync(join(scratch, "chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1280, height: 860 },
    acceptDownloads: true,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(STEP_MS);
  const outside = [];
  page.on("request", (r) => {
    const u = new URL(r.url());
    if (!["data:", "blob:"].includes(u.protocol) && u.origin !== base) outside.push(r.url());
  });
  const consoleErrors = [];
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
  page.on("pageerror", (e) => {
    consoleErrors.push(String(e));
    log(`page error: ${e.stack ?? e}`);
  });
  globalThis.failShot = (name) => page.screenshot({ path: join(shots, `failed-${name}.png`), fullPage: true }).catch(() => {});
  const shot = (name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  const nav = (name) => page.getByRole("navigation").getByRole("link", { name, exact: true }).click();
  /** Herald's API as the signed-in tab (its token from sessionStorage). */
  const apiJson = async (path, init = {}) => {
    const token = await page.evaluate(() => sessionStorage.getItem("herald.access_token"));
    const res = await fetch(`${base}${path}`, { ...init, headers: { "content-type": "application/json", authorization: `Bearer ${token}`, ...(init.headers ?? {}) } });
    if (!res.ok) throw new Error(`${path}: HTTP ${res.status} ${await res.text()}`);
    return res.status === 204 ? null : res.json();
  };
  const email = `e2e-${randomBytes(4).toString("hex")}@example.com`;
  const password = "correct horse battery";

  try {
    await test("register, sign out and sign in", async () => {
      // the budget (issue 15): the first screen renders in under 1 s on the loopback. Measured in
      // the page, from the start of the navigation to the sign-in heading on screen, with the HTTP
      // cache off, three times: the best of three, because the CI machine is shared and one
      // reading can be a neighbour's compile (every reading is logged)
      const readings = [];
      for (let i = 0; i < 3; i++) {
        const p = i === 0 ? page : await context.newPage();
        const cdp = await context.newCDPSession(p);
        await cdp.send("Network.setCacheDisabled", { cacheDisabled: true });
        await p.goto(base);
        const ms = Math.round(
          await (
            await p.waitForFunction(() => ([...document.querySelectorAll("h1")].some((h) => h.textContent === "Sign in") ? performance.now() : false), null, { polling: "raf" })
          ).jsonValue(),
        );
        const timings = await p.evaluate(() => [
          ["document", Math.round(performance.getEntriesByType("navigation")[0]?.responseEnd ?? 0)],
          ...performance.getEntriesByType("resource").map((r) => [r.name.replace(location.origin, ""), Math.round(r.startTime), Math.round(r.responseEnd)]),
        ]);
        log(`first screen rendered in ${ms} ms (timings since the navigation started: ${JSON.stringify(timings)})`);
        readings.push(ms);
        await cdp.detach();
        if (p !== page) await p.close();
      }
      const firstScreen = Math.min(...readings);
      if (firstScreen >= FIRST_SCREEN_MS) throw new Error(`the first screen took ${readings.join(", ")} ms (budget ${FIRST_SCREEN_MS} ms)`);
      await shot("01-sign-in");
      await page.getByRole("button", { name: "New here? Create an account" }).click();
      await page.getByLabel("Email").fill(email);
      await page.getByLabel(/^Password/).fill("short");
      await page.getByRole("button", { name: "Create account" }).click();
      // the API's refusal is shown next to the password field
      await page.getByText(/password/i).filter({ hasText: /8/ }).first().waitFor();
      await shot("02-register-error");
      await page.getByLabel(/^Password/).fill(password);
      await page.getByLabel(/^Name/).fill("E2E Shop");
      await page.getByRole("button", { name: "Create account" }).click();
      await page.getByRole("heading", { name: "Overview" }).waitFor();
      const stored = await page.evaluate(() => ({ local: JSON.stringify(localStorage), session: Object.keys(sessionStorage) }));
      if (stored.local.includes("ey")) throw new Error(`token in localStorage: ${stored.local}`);
      await page.getByRole("button", { name: "Sign out" }).click();
      await page.getByLabel("Email").fill(email);
      await page.getByLabel(/^Password/).fill(password);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByRole("heading", { name: "Overview" }).waitFor();
      await shot("03-overview-empty");
    });

    await test("link a number: the QR code shows until the phone scans it", async () => {
      await nav("Numbers");
      await page.getByLabel(/^Name/).fill("Main number");
      await page.getByRole("button", { name: "Link", exact: true }).click();
      await page.getByRole("button", { name: "Connect" }).click();
      await page.getByAltText("QR code").waitFor();
      await shot("04-numbers-qr");
      const users = await simJson(sim, "/admin/users");
      const user = users.data[users.data.length - 1];
      await simJson(sim, "/sim/scan", { user_id: user.id });
      await page.locator("[data-status=connected]").waitFor();
      await shot("05-numbers-connected");
      globalThis.simToken = user.token;
    });

    await test("create a text template with a live preview", async () => {
      await nav("Templates");
      await page.getByLabel(/^Name/).fill("Welcome");
      await page.getByLabel(/^Message/).fill("Halo {{ name }}, promo hari ini!");
      await page.getByTestId("preview-text").filter({ hasText: "Halo Sari, promo hari ini!" }).waitFor();
      await page.getByRole("button", { name: "Create template" }).click();
      await page.getByRole("cell", { name: "Welcome" }).waitFor();
      await shot("06-templates");
    });

    await test("create a campaign and watch it complete without a reload", async () => {
      await nav("Campaigns");
      await page.getByRole("link", { name: "New campaign" }).click();
      await page.getByLabel(/^Name/).fill("E2E promo");
      const phones = Array.from({ length: 12 }, (_, i) => `62812000${String(i).padStart(5, "0")}`);
      await page.getByLabel("Phones, one per line").fill(phones.join("\n"));
      await page.getByLabel("Pacing: least milliseconds between messages").fill("300");
      await page.getByLabel("Pacing: most milliseconds between messages").fill("500");
      await shot("07-campaign-new");
      await page.evaluate(() => {
        window.__noReload = true;
        // what the bar showed, and when: every change of the detail page's percentage
        window.__bar = [];
        let last = null;
        const tick = () => {
          const el = /^\/campaigns\/[0-9a-f-]{36}$/.test(location.pathname) ? document.querySelector("[data-testid=progress-percent]") : null;
          const v = el ? el.textContent : null;
          if (v !== null && v !== last) window.__bar.push([Date.now(), parseInt(v, 10)]);
          last = v;
          requestAnimationFrame(tick);
        };
        tick();
      });
      await page.getByRole("button", { name: "Create campaign" }).click();
      await page.getByRole("heading", { name: "E2E promo" }).waitFor();
      const campaignId = new URL(page.url()).pathname.split("/").pop();
      // the API's progress, read every 100 ms while the campaign runs: what the screen must follow
      const apiSeen = [];
      let polling = true;
      const poller = (async () => {
        while (polling) {
          const c = await apiJson(`/api/v1/campaigns/${campaignId}`);
          const finished = c.counts.sent + c.counts.delivered + c.counts.read + c.counts.failed + c.counts.skipped;
          const pct = c.status === "completed" ? 100 : c.total_recipients ? Math.min(100, Math.floor((finished * 100) / c.total_recipients)) : 0;
          apiSeen.push([Date.now(), pct]);
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      // paused while it runs, it stays still; resumed, it goes on
      const heading = page.getByRole("heading", { name: "E2E promo" }).locator("xpath=..");
      await until("a quarter is sent", async () => parseInt((await page.getByTestId("progress-percent").textContent()) ?? "0", 10) >= 25, 30_000);
      await page.getByRole("button", { name: "Pause" }).click();
      await heading.locator("[data-status=paused]").waitFor();
      await new Promise((r) => setTimeout(r, 1000));
      const held = await page.getByTestId("progress-percent").textContent();
      await new Promise((r) => setTimeout(r, 1500));
      if ((await page.getByTestId("progress-percent").textContent()) !== held) throw new Error("a paused campaign kept sending");
      await shot("08b-campaign-paused");
      await page.getByRole("button", { name: "Resume" }).click();
      await heading.locator("[data-status=running], [data-status=completed]").waitFor();
      // paced: it runs for a few seconds, so the bar is seen moving before the end
      const seen = new Set();
      await until("the campaign completes on screen", async () => {
        seen.add(await page.getByTestId("progress-percent").first().textContent());
        return (await page.locator("[data-status=completed]").count()) > 0 && seen.has("100%");
      });
      await new Promise((r) => setTimeout(r, PROGRESS_LAG_MS + 200));
      polling = false;
      await poller;
      // the budget: the bar is never more than 1 s behind what the API said
      const bar = await page.evaluate(() => window.__bar);
      let worst = 0;
      for (const [at, pct] of apiSeen) {
        const shown = bar.find(([, v]) => v >= pct);
        const lag = shown ? Math.max(0, shown[0] - at) : Infinity;
        worst = Math.max(worst, lag);
        if (lag > PROGRESS_LAG_MS) throw new Error(`the API said ${pct}% at ${at}, the bar showed it ${shown ? `${lag} ms later` : "never"} (bar: ${JSON.stringify(bar)})`);
      }
      if (apiSeen.filter(([, p]) => p > 0 && p < 100).length < 3) throw new Error(`too few API readings while running: ${JSON.stringify(apiSeen)}`);
      log(`progress on screen at most ${worst} ms behind the API (${apiSeen.length} readings, ${bar.length} bar changes)`);
      await shot("08a-campaign-detail-paced");
      await page.getByTestId("campaign-pacing").filter({ hasText: "300–500 ms between messages · this campaign's own" }).waitFor();
      // a completed campaign shows final counts: nobody left queued or sending on screen
      await until("the counts on screen are final", async () => {
        const left = await page.locator("[data-count=queued], [data-count=sending]").allTextContents();
        return left.length === 2 && left.every((t) => /(^|\D)0$/.test(t.trim()));
      });
      if (!(await page.evaluate(() => window.__noReload === true))) throw new Error("the page reloaded");
      if (seen.size < 2) throw new Error(`the bar never moved: ${[...seen]}`);
      log(`progress seen: ${[...seen].join(" ")}`);
      await page.getByRole("table", { name: "Recipients" }).getByRole("row").nth(12).waitFor();
      // and the table too: every recipient's row shows a final status
      await until("the recipients table is final", async () => {
        const statuses = await page.getByRole("table", { name: "Recipients" }).locator("tbody tr").allTextContents();
        return statuses.length === 12 && !statuses.some((t) => /queued|sending/i.test(t));
      });
      await shot("08-campaign-completed");
      const download = page.waitForEvent("download");
      await page.getByRole("button", { name: "Export CSV" }).click();
      const file = await (await download).path();
      const csv = readFileSync(file, "utf8");
      if (!csv.includes(phones[0]) || csv.trim().split("\n").length !== 13) throw new Error(`export: ${csv}`);
      globalThis.promoUrl = page.url();
      await nav("Campaigns");
      await page.getByRole("link", { name: "E2E promo" }).waitFor();
      await shot("09-campaigns");
    });

    await test("create a recurring campaign (its runs are checked at the end)", async () => {
      await nav("Campaigns");
      await page.getByRole("link", { name: "New campaign" }).click();
      await page.getByLabel(/^Name/).fill("Every five minutes");
      await page.getByLabel("Phones, one per line").fill("6281277770001");
      await page.getByLabel("Recurring").check();
      // more often than every 5 minutes is refused: the API's reason shows next to the schedule
      await page.getByLabel(/^Schedule/).fill("* * * * *");
      await page.getByText("Runs every day, every minute.").waitFor();
      await page.getByRole("button", { name: "Create campaign" }).click();
      await page.locator("[aria-invalid=true]").and(page.getByLabel(/^Schedule/)).waitFor();
      await page.getByText(/minimum is 5 minutes/).waitFor();
      await shot("09d-campaign-recurring-refused");
      await page.getByLabel(/^Schedule/).fill("*/5 * * * *");
      await page.getByText("Runs every day, every 5 minutes.").waitFor();
      await page.getByTestId("next-runs").waitFor();
      await page.getByRole("button", { name: "Create campaign" }).click();
      await page.getByRole("heading", { name: "Every five minutes" }).waitFor();
      await page.getByTestId("recurrence").filter({ hasText: "every 5 minutes" }).waitFor();
      await shot("09e-campaign-recurring");
      globalThis.recurringUrl = page.url();
      // its first run: the next five-minute mark
      globalThis.firstRunAt = Math.ceil((Date.now() + 1) / 300_000) * 300_000;
    });

    await test("an incoming message appears in Chats unread, and a reply reaches the simulator", async () => {
      // the sender is a contact: its card (tags, fields) shows beside the chat
      await apiJson("/api/v1/contacts", { method: "POST", body: JSON.stringify({ phone: "6281299990001", name: "Sari Dewi", tags: ["vip", "bandung"], fields: { city: "Bandung" } }) });
      await nav("Chats");
      await page.getByText("Choose a chat.").waitFor();
      const posted = await simJson(sim, "/sim/incoming", { token: globalThis.simToken, from: "6281299990001", text: "Halo, promo masih berlaku?", push_name: "Sari" });
      if (!posted.posted) throw new Error(`not posted: ${JSON.stringify(posted)}`);
      const item = page.locator("[data-chat]").filter({ hasText: "Halo, promo masih berlaku?" });
      await item.getByTestId("unread").filter({ hasText: "1" }).waitFor();
      await shot("10-chats-unread");
      await item.click();
      await page.getByText("Halo, promo masih berlaku?").last().waitFor();
      await page.getByRole("textbox", { name: "Reply" }).fill("Masih, sampai Minggu!");
      await page.getByRole("button", { name: "Send" }).click();
      await until("the reply reaches the simulator", async () => {
        const m = await (await fetch(`${sim}/sim/messages?limit=1000`)).json();
        return m.items.some((x) => x.phone === "6281299990001" && x.text === "Masih, sampai Minggu!");
      });
      await page.locator("[data-direction=outgoing]").filter({ hasText: "Masih, sampai Minggu!" }).waitFor();
      const card = page.getByTestId("contact-card");
      await card.filter({ hasText: "Sari Dewi" }).filter({ hasText: "vip" }).filter({ hasText: "Bandung" }).waitFor();
      await shot("11-chat-reply");
      // history pages back: 50 more messages arrive live (what was on screen stays); opened
      // afresh the chat shows the newest 50, and the older ones on demand
      for (let i = 1; i <= 50; i++) {
        await simJson(sim, "/sim/incoming", { token: globalThis.simToken, from: "6281299990001", text: `pesan ${i}`, push_name: "Sari" });
      }
      await page.locator("[data-direction=incoming]").filter({ hasText: /^pesan 50/ }).waitFor();
      await page.reload();
      await until("the newest 50 show", async () => (await page.locator("[data-direction]").count()) === 50);
      await page.getByRole("button", { name: "Older messages" }).click();
      await until("older messages show", async () => (await page.locator("[data-direction]").count()) === 52);
      await page.getByText("Halo, promo masih berlaku?").first().waitFor();
      await shot("11a-chat-history");
    });

    await test("contacts, settings (an API key shown once), overview and Bahasa Indonesia", async () => {
      await nav("Contacts");
      await page.getByLabel("Phone").fill("6281211112222");
      await page.getByLabel(/^Name/).fill("Budi");
      await page.getByRole("button", { name: "Add contact" }).click();
      const contactsTable = page.getByRole("table", { name: "Contacts" });
      await contactsTable.getByRole("button", { name: "Open: Budi" }).waitFor();
      // a large CSV: its upload and acceptance show, then the result with every rejected row
      const lines = ["phone,name,tags,city"];
      for (let i = 0; i < 20_000; i++) lines.push(`6287${String(i).padStart(8, "0")},Pelanggan ${i},import,Kota ${i % 7}`);
      lines.push("not-a-phone,Nobody,,");
      lines.push("12,Too short,,");
      await page.locator("input[type=file]").setInputFiles({ name: "contacts.csv", mimeType: "text/csv", buffer: Buffer.from(lines.join("\n") + "\n") });
      await page.getByTestId("long-work").waitFor();
      await page.getByText(/Imported 20000, matched 0, rejected 2/).waitFor({ timeout: 120_000 });
      const rejected = page.getByRole("table", { name: "Rejected rows" }).locator("tbody tr");
      await until("each rejected row is listed", async () => (await rejected.count()) === 2);
      if (!(await rejected.first().textContent()).includes("not-a-phone")) throw new Error(`rejected: ${await rejected.allTextContents()}`);
      await shot("12-contacts-import");
      // search, tag filter, favourite pinned first, tags in place, the card
      await page.getByLabel("Search").fill("Budi");
      await until("the search applies", async () => (await contactsTable.locator("tbody tr").count()) === 1);
      await page.getByLabel("Search").fill("");
      await page.getByLabel("Tag", { exact: true }).fill("vip");
      await contactsTable.getByRole("button", { name: "Open: Sari Dewi" }).waitFor();
      await page.getByLabel("Tag", { exact: true }).fill("");
      await contactsTable.locator("tbody tr").nth(49).waitFor();
      await page.getByRole("button", { name: "Next page" }).click();
      await page.getByRole("button", { name: "First page" }).click();
      // by name, Sari Dewi is far down the list; as a favourite she is first
      await page.getByLabel("Search").fill("Sari");
      await page.getByRole("checkbox", { name: "Favourite: Sari Dewi" }).check();
      await until("the favourite is saved", async () => (await apiJson("/api/v1/contacts/6281299990001")).favorite === true);
      await page.getByLabel("Search").fill("");
      await until("a favourite is pinned first", async () => ((await contactsTable.locator("tbody tr").first().textContent()) ?? "").includes("Sari Dewi"));
      await page.getByRole("textbox", { name: "Tags (comma separated): Budi" }).fill("vip, jakarta");
      await page.getByRole("textbox", { name: "Tags (comma separated): Budi" }).press("Enter");
      await until("the tags are saved", async () => (await apiJson("/api/v1/contacts/6281211112222")).tags.slice().sort().join() === "jakarta,vip");
      await contactsTable.getByRole("button", { name: "Open: Sari Dewi" }).click();
      await page.getByTestId("contact-card").filter({ hasText: "city" }).filter({ hasText: "Bandung" }).waitFor();
      await shot("12-contacts");
      await page.getByRole("button", { name: "Sync from phone" }).click();
      await page.getByTestId("sync-result").waitFor();
      await shot("12a-contacts-synced");
      await nav("Settings");
      await page.getByLabel("Key name").fill("CI");
      await page.getByRole("button", { name: "Create API key" }).click();
      const key = await page.getByTestId("new-key").textContent();
      const keyRow = page.getByRole("row").filter({ hasText: "CI" });
      await keyRow.waitFor();
      if ((await keyRow.textContent()).includes(key.trim())) throw new Error("the list shows the whole key");
      await page.getByText(/Plan: unlimited/).waitFor();
      await shot("13-settings");
      await keyRow.getByRole("button", { name: "Revoke" }).click();
      await keyRow.waitFor({ state: "detached" });
      // shown once: a new visit does not show it again
      await nav("Overview");
      await page.getByRole("heading", { name: "Overview", level: 1 }).waitFor();
      await nav("Settings");
      await page.getByRole("heading", { name: "Settings", level: 1 }).waitFor();
      await page.getByText(/Plan: unlimited/).waitFor();
      if (await page.getByTestId("new-key").count()) throw new Error("the key is shown again");
      await nav("Overview");
      await page.getByText("Main number").waitFor();
      await shot("14-overview");
      // keyboard: on a fresh load the first Tab reaches the skip link (the token survives a reload)
      await page.reload();
      await page.getByText("Main number").waitFor();
      await page.keyboard.press("Tab");
      const focused = await page.evaluate(() => document.activeElement?.textContent);
      if (focused !== "Skip to content") throw new Error(`first Tab focused ${focused}`);
      // Enter on the skip link moves on to the screen: the next Tab is inside it
      await page.keyboard.press("Enter");
      await page.keyboard.press("Tab");
      if (!(await page.evaluate(() => Boolean(document.activeElement?.closest("#main"))))) throw new Error("the skip link did not lead into the screen");
      // the menu is reached and used by keyboard
      await page.reload();
      await page.getByText("Main number").waitFor();
      for (let i = 0; i < 12; i++) {
        await page.keyboard.press("Tab");
        if ((await page.evaluate(() => document.activeElement?.textContent)) === "Campaigns") break;
      }
      await page.keyboard.press("Enter");
      await page.getByRole("heading", { name: "Campaigns", level: 1 }).waitFor();
      await nav("Overview");
      await page.getByText("Main number").waitFor();
      await page.getByLabel("Language").selectOption("id");
      await page.getByRole("navigation").getByRole("link", { name: "Kampanye" }).waitFor();
      await shot("15-overview-id");
      // every screen in Bahasa Indonesia: none of the English words of its buttons and headings is left
      const english = /\b(Sign out|New campaign|Create campaign|Export CSV|Next page|First page|Link a number|Create template|Add contact|Sync from phone|Create API key|Revoke|Recipients|Favourite|Usage this hour|Choose a chat|Waiting for|running|completed|connected|cancelled)\b/;
      for (const [name, path] of [["16-campaigns-id", "/campaigns"], ["17-campaign-id", new URL(globalThis.promoUrl).pathname], ["18-campaign-new-id", "/campaigns/new"], ["19-numbers-id", "/numbers"], ["20-templates-id", "/templates"], ["21-chats-id", "/chats"], ["22-contacts-id", "/contacts"], ["23-settings-id", "/settings"]]) {
        await page.evaluate((p) => {
          window.history.pushState(null, "", p);
          window.dispatchEvent(new PopStateEvent("popstate"));
        }, path);
        await page.getByRole("heading", { level: 1 }).waitFor();
        await page.waitForLoadState("networkidle").catch(() => {});
        await new Promise((r) => setTimeout(r, 300));
        const text = await page.locator("#main").innerText();
        const left = text.match(english);
        if (left) throw new Error(`${path} in Bahasa Indonesia still says "${left[0]}"`);
        await shot(name);
      }
      await page.getByLabel("Bahasa").selectOption("en");
    });

    await test("numbers: pacing edited in place, a second number deleted, the first logged out live", async () => {
      await nav("Numbers");
      const main = page.locator("[data-session]").filter({ hasText: "Main number" });
      await main.getByLabel("Pacing: least milliseconds between messages").fill("1000");
      await main.getByLabel("Pacing: most milliseconds between messages").fill("2000");
      await main.getByRole("button", { name: "Save" }).click();
      await until("the pacing is saved", async () => {
        const list = await apiJson("/api/v1/sessions");
        const s = list.items.find((x) => x.name === "Main number");
        return s.pacing?.min_interval_ms === 1000 && s.pacing?.max_interval_ms === 2000;
      });
      await page.getByLabel(/^Name/).fill("Spare number");
      await page.getByRole("button", { name: "Link", exact: true }).click();
      const spare = page.locator("[data-session]").filter({ hasText: "Spare number" });
      await spare.getByRole("button", { name: "Connect" }).click();
      await spare.getByAltText("QR code").waitFor();
      await shot("24-numbers-two");
      await spare.getByRole("button", { name: "Delete" }).click();
      await spare.waitFor({ state: "detached" });
      await main.getByRole("button", { name: "Log out" }).click();
      await main.locator("[data-status=logged_out], [data-status=disconnected]").waitFor();
      await shot("25-numbers-logged-out");
    });

    await test("the recurring campaign lists its first run", async () => {
      await page.goto(globalThis.recurringUrl);
      await page.getByRole("heading", { name: "Every five minutes" }).waitFor();
      // the first run is awaited only when its time has passed during the test (up to 5 minutes away)
      if (Date.now() > globalThis.firstRunAt + 15_000) {
        await page.getByRole("table", { name: "Runs" }).getByRole("link", { name: "Open this run" }).first().waitFor({ timeout: 30_000 });
        log("the recurring campaign's first run is listed");
      } else if (Date.now() < globalThis.firstRunAt - 15_000) {
        await page.getByText("No runs yet").waitFor();
        log(`the first run is due at ${new Date(globalThis.firstRunAt).toISOString()}: "No runs yet" is shown`);
      } else {
        // within 15 s of the run's time either is right: it may fire while the page loads
        const run = page.getByRole("table", { name: "Runs" }).getByRole("link", { name: "Open this run" }).first();
        await page.getByText("No runs yet").or(run).first().waitFor();
        log(`the first run is due at ${new Date(globalThis.firstRunAt).toISOString()}, about now: the runs section shows`);
      }
      await shot("26-campaign-runs");
      await page.getByRole("button", { name: "Cancel campaign" }).click();
      await page.getByRole("heading", { name: "Every five minutes" }).locator("xpath=..").locator("[data-status=cancelled]").waitFor();
    });

    await test("a 375 px wide phone screen has no sideways scrolling", async () => {
      const phone = await context.newPage();
      await phone.setViewportSize({ width: 375, height: 740 });
      await phone.goto(base); // a new tab has no session: sign in there too
      await phone.getByLabel("Email").fill(email);
      await phone.getByLabel(/^Password/).fill(password);
      await phone.getByRole("button", { name: "Sign in" }).click();
      await phone.getByRole("heading", { name: "Overview" }).waitFor();
      await phone.getByText("Main number").waitFor();
      await phone.screenshot({ path: join(shots, "16-phone-overview.png"), fullPage: true });
      for (const path of ["/campaigns", new URL(globalThis.promoUrl).pathname, "/campaigns/new", "/numbers", "/templates", "/chats", "/contacts", "/settings"]) {
        await phone.goto(base + path);
        await phone.getByRole("heading", { level: 1 }).waitFor();
        await phone.waitForLoadState("networkidle").catch(() => {});
        const wide = await phone.evaluate(() => document.documentElement.scrollWidth);
        if (wide > 375) throw new Error(`${path} is ${wide} px wide`);
        await phone.screenshot({ path: join(shots, `30-phone${path.replaceAll("/", "-").replace(/-[0-9a-f-]{36}$/, "-detail")}.png`), fullPage: true });
      }
      // the menu opens from its button on a phone
      await phone.getByRole("button", { name: "Menu" }).click();
      await phone.getByRole("navigation").getByRole("link", { name: "Chats", exact: true }).click();
      await phone.getByRole("heading", { name: "Chats", level: 1 }).waitFor();
      await phone.close();
    });

    // last: accepting and cancelling 100,000 recipients keeps Herald's read models busy for a while
    await test("a 100,000-recipient campaign shows its upload and acceptance, pages fast, and cancels", async () => {
      await nav("Campaigns");
      await page.getByRole("link", { name: "New campaign" }).click();
      await page.getByLabel(/^Name/).fill("Big list");
      const many = Array.from({ length: 100_000 }, (_, i) => `6285${String(i).padStart(9, "0")}`);
      // pasted as a browser pastes: one input event with the whole text
      const tPaste = Date.now();
      await page.getByLabel("Phones, one per line").evaluate((el, text) => {
        const set = Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, "value").set;
        set.call(el, text);
        el.dispatchEvent(new Event("input", { bubbles: true }));
      }, many.join("\n"));
      await page.getByText("100000 phones pasted").waitFor();
      log(`100,000 phones pasted and counted in ${Date.now() - tPaste} ms`);
      await page.getByLabel("At a time").check();
      await page.getByLabel(/^Date and time/).fill("2030-01-07T09:00");
      const t0 = Date.now();
      await page.getByRole("button", { name: "Create campaign" }).click();
      // the body goes up, then Herald accepts it: the form says which, with the time so far
      await page.locator("[data-testid=long-work][data-phase=accepting]").waitFor();
      await shot("09a-campaign-100k-accepting");
      await page.getByRole("heading", { name: "Big list" }).waitFor({ timeout: 180_000 });
      log(`100,000 recipients sent and accepted in ${Date.now() - t0} ms`);
      await page.getByText(/Recipients: 100000/).waitFor();
      const table = page.getByRole("table", { name: "Recipients" });
      const rows = table.locator("tbody tr");
      await rows.nth(49).waitFor();
      for (let i = 0; i < 3; i++) {
        const first = await rows.first().textContent();
        const t1 = Date.now();
        await page.getByRole("button", { name: "Next page" }).click();
        await until("the next page shows", async () => (await rows.first().textContent()) !== first && (await rows.count()) === 50, 10_000);
        const ms = Date.now() - t1;
        if (ms > PAGE_MS) throw new Error(`a recipients page of a 100,000-recipient campaign took ${ms} ms (budget ${PAGE_MS} ms)`);
        log(`recipients page ${i + 2} in ${ms} ms`);
      }
      await page.getByRole("combobox", { name: "Status" }).selectOption("queued");
      await until("the status filter applies", async () => (await rows.count()) === 50 && (await page.getByRole("button", { name: "First page" }).isDisabled()));
      await shot("09b-campaign-100k");
      // a scheduled campaign cannot pause (the API says so): only cancel is offered
      if (await page.getByRole("button", { name: "Pause" }).count()) throw new Error("Pause offered on a scheduled campaign");
      await page.getByRole("button", { name: "Cancel campaign" }).click();
      await page.getByRole("heading", { name: "Big list" }).locator("xpath=..").locator("[data-status=cancelled]").waitFor({ timeout: 120_000 });
      await shot("09c-campaign-100k-cancelled");
    });

    if (outside.length) throw new Error(`requests left the machine: ${outside.join(", ")}`);
    const csp = consoleErrors.filter((e) => /Content Security Policy/i.test(e));
    if (csp.length) throw new Error(`CSP violations: ${csp.join("\n")}`);
  } finally {
    await context.close().catch(() => {});
  }
}

let code = 0;
try {
  await main();
} catch (e) {
  if (!failures) log(`FAIL ${e.stack ?? e}`);
  code = 1;
} finally {
  for (const c of children) c.kill("SIGTERM");
  await new Promise((r) => setTimeout(r, 500));
  try {
    psql(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
  } catch {
    // best effort: scripts/test.sh also drops leftovers
  }
  rmSync(scratch, { recursive: true, force: true });
  log(code ? "failed" : "all passed", `(screenshots: ${shots})`);
}
process.exit(code);
