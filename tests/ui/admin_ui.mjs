// Drives the admin UI at <base>/ui in Debian's headless Chromium through
// playwright-core (no browser download): a wrong master key shows the
// gateway's 401 message; with the right one it creates a team and a virtual
// key in that team, sees both listed, spends with the key (shown once) and
// with a second key made through the API on /v1/chat/completions, finds the
// spend in the chart (grouped by key, model and team) and the total, takes
// a full-page screenshot, then deletes the key (which stops working) and
// the team.
//
//   node tests/ui/admin_ui.mjs --base http://127.0.0.1:4000 \
//     --master-key sk-test-master --screenshot /tmp/admin_ui.png \
//     [--model gpt-4o-mini] [--chromium /usr/bin/chromium]
//
// Exits 0 when every step passed; otherwise prints the failed step and why,
// saves <screenshot>.failure.png and exits 1.

import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const { values: opt } = parseArgs({
  options: {
    base: { type: "string" },
    "master-key": { type: "string" },
    screenshot: { type: "string" },
    model: { type: "string", default: "gpt-4o-mini" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
    calls: { type: "string", default: "3" },
  },
});
for (const required of ["base", "master-key", "screenshot"]) {
  if (!opt[required]) {
    console.error(`admin_ui: --${required} is required`);
    process.exit(2);
  }
}
const BASE = opt.base.replace(/\/+$/, "");
const MASTER = opt["master-key"];
const SUFFIX = Math.random().toString(36).slice(2, 8);
const KEY_ALIAS = `ui-key-${SUFFIX}`;
const TEAM_ALIAS = `ui-team-${SUFFIX}`;
const OTHER_ALIAS = `ui-other-${SUFFIX}`;
const TIMEOUT_MS = 15_000;

let current = "start";
const log = (msg) => console.log(`admin_ui: ${msg}`);

/** Runs one named step; a failure names the step. */
async function step(name, work) {
  current = name;
  const t0 = Date.now();
  const out = await work();
  log(`ok  ${name} (${Date.now() - t0} ms)`);
  return out;
}

function check(cond, message) {
  if (!cond) throw new Error(message);
}

/** Polls `probe` until it returns a truthy value or the time is up. */
async function eventually(probe, what, ms = TIMEOUT_MS) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await probe();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  throw new Error(`timed out waiting for ${what}${last instanceof Error ? `: ${last.message}` : ""}`);
}

async function chat(key, text) {
  const res = await fetch(`${BASE}/v1/chat/completions`, {
    method: "POST",
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: JSON.stringify({ model: opt.model, messages: [{ role: "user", content: text }], max_tokens: 16 }),
  });
  return { status: res.status, body: await res.text() };
}

const browser = await chromium.launch({
  executablePath: opt.chromium,
  args: ["--no-sandbox"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, colorScheme: "light" });
const page = await context.newPage();
page.setDefaultTimeout(TIMEOUT_MS);

// Uncaught exceptions in the page and anything the CSP blocked fail the run.
const pageProblems = [];
page.on("pageerror", (e) => pageProblems.push(`uncaught: ${e.message}`));
page.on("console", (m) => {
  if (/Content Security Policy/i.test(m.text())) pageProblems.push(`CSP: ${m.text()}`);
});

const rowOf = (table, text) => page.locator(`${table} tbody tr`, { hasText: text });
const legendText = async () => (await page.locator("#spend-chart svg .legend text").allTextContents()).join(" | ");

async function spendChartShows(groupBy, label) {
  await page.selectOption("#spend-group-by", groupBy);
  try {
    return await eventually(async () => {
      await page.click("#spend-refresh");
      await page.locator("#spend-refresh:not([disabled])").waitFor();
      const bars = await page.locator("#spend-chart svg rect.bar").count();
      const legend = await legendText();
      return bars > 0 && legend.includes(label) ? { bars, legend } : null;
    }, `a bar and "${label}" in the legend of the chart grouped by ${groupBy}`);
  } catch (e) {
    const error = await page.locator("#spend-error").textContent().catch(() => "");
    throw new Error(`${e.message} (legend: "${await legendText()}", error: "${error}")`);
  }
}

let failed = false;
try {
  await step("open /ui", async () => {
    const res = await page.goto(`${BASE}/ui`);
    check(res && res.status() === 200, `GET /ui answered ${res && res.status()}`);
    const csp = res.headers()["content-security-policy"] || "";
    check(csp.includes("default-src 'self'"), `no 'self'-only CSP on /ui: "${csp}"`);
    await page.locator("#master-key").waitFor();
  });

  await step("a wrong master key shows the 401 message", async () => {
    await page.fill("#master-key", "sk-not-the-master-key");
    await page.click("#sign-in");
    const err = page.locator("#sign-in-error");
    await err.waitFor();
    const text = (await err.textContent()) || "";
    check(text.includes("401"), `sign-in error does not name the 401: "${text}"`);
    check(await page.locator("#keys-view").isHidden(), "the keys view shows after a wrong key");
  });

  await step("sign in", async () => {
    await page.fill("#master-key", MASTER);
    await page.click("#sign-in");
    await page.locator("#keys-view").waitFor();
    await page.locator("#keys-table").waitFor();
    check(await page.locator("#sign-in-error").isHidden(), "the sign-in error is still shown");
  });

  await step("create a team and see it listed", async () => {
    await page.click("#tab-teams");
    await page.locator("#teams-view").waitFor();
    await page.fill("#team-alias", TEAM_ALIAS);
    await page.fill("#team-max-budget", "50");
    await page.fill("#team-budget-duration", "30d");
    await page.click("#create-team");
    await rowOf("#teams-table", TEAM_ALIAS).waitFor();
    check(await page.locator("#teams-error").isHidden(), await page.locator("#teams-error").textContent());
  });

  const secret = await step("create a key and see its secret once", async () => {
    await page.click("#tab-keys");
    await page.locator("#keys-view").waitFor();
    await eventually(async () => (await page.locator("#key-team option", { hasText: TEAM_ALIAS }).count()) > 0,
      "the new team in the key form's team list");
    await page.fill("#key-alias", KEY_ALIAS);
    await page.fill("#key-models", opt.model);
    await page.fill("#key-max-budget", "10");
    await page.fill("#key-budget-duration", "30d");
    await page.fill("#key-rpm", "100");
    await page.fill("#key-tpm", "100000");
    await page.selectOption("#key-team", { label: TEAM_ALIAS });
    await page.click("#create-key");
    await page.locator("#new-key-secret").waitFor();
    const value = ((await page.locator("#new-key-value").textContent()) || "").trim();
    check(value.startsWith("sk-"), `the shown secret is not an sk- key: "${value}"`);
    return value;
  });

  await step("the key is listed with its alias, model, budget and team", async () => {
    const row = rowOf("#keys-table", KEY_ALIAS);
    await row.waitFor();
    const text = (await row.textContent()) || "";
    for (const want of [opt.model, "$10.00 / 30d", TEAM_ALIAS, "100 rpm"]) {
      check(text.includes(want), `key row lacks "${want}": "${text}"`);
    }
    const shownName = ((await row.locator("td").nth(1).textContent()) || "").trim();
    check(!text.includes(secret), "the key table shows the full secret");
    check(shownName.length > 0 && shownName !== secret, `key_name column: "${shownName}"`);
  });

  await step(`spend with the key (${opt.calls} chat completions)`, async () => {
    for (let i = 0; i < Number(opt.calls); i += 1) {
      const { status, body } = await chat(secret, "hello");
      check(status === 200, `chat completion with the new key answered ${status}: ${body.slice(0, 500)}`);
      const usage = JSON.parse(body).usage;
      check(usage && usage.total_tokens > 0, `no usage in the answer: ${body.slice(0, 500)}`);
    }
  });

  await step("a second key, made through the API, spends too (a stacked bar)", async () => {
    const res = await fetch(`${BASE}/key/generate`, {
      method: "POST",
      headers: { Authorization: `Bearer ${MASTER}`, "Content-Type": "application/json" },
      body: JSON.stringify({ key_alias: OTHER_ALIAS, models: [opt.model] }),
    });
    const body = await res.text();
    check(res.status === 200, `/key/generate answered ${res.status}: ${body.slice(0, 500)}`);
    const other = JSON.parse(body).key;
    for (let i = 0; i < 2 * Number(opt.calls); i += 1) {
      const { status, body: answer } = await chat(other, "hello");
      check(status === 200, `chat completion with the second key answered ${status}: ${answer.slice(0, 500)}`);
    }
  });

  await step("the key's spend shows in the keys table", async () => {
    await eventually(async () => {
      await page.click("#tab-teams");
      await page.click("#tab-keys");
      const cell = rowOf("#keys-table", KEY_ALIAS).locator("td.num");
      const text = ((await cell.textContent()) || "").trim();
      return text !== "$0" && text !== "–" ? text : null;
    }, "a non-zero spend in the key's row");
  });

  await step("the spend chart shows the key, the model and the team", async () => {
    await page.click("#tab-spend");
    await page.locator("#spend-view").waitFor();
    await page.locator("#spend-chart svg").waitFor();
    check((await page.inputValue("#spend-start")) < (await page.inputValue("#spend-end")),
      "the default date range is empty");
    const byModel = await spendChartShows("model", opt.model);
    const byTeam = await spendChartShows("team", TEAM_ALIAS);
    const byKey = await spendChartShows("api_key", KEY_ALIAS);
    check(byKey.legend.includes(OTHER_ALIAS), `the second key is not in the legend: ${byKey.legend}`);
    check(byKey.bars >= 2, `one day, two keys: expected a stacked bar of 2 segments, got ${byKey.bars}`);
    log(`    bars: key ${byKey.bars}, model ${byModel.bars}, team ${byTeam.bars}; legend: ${byKey.legend}`);
    for (const axis of ["x-axis", "y-axis"]) {
      check((await page.locator(`#spend-chart svg .${axis} text`).count()) > 0, `the chart has no ${axis} labels`);
    }
    const total = ((await page.locator("#spend-total").textContent()) || "").trim();
    check(/^\$/.test(total) && total !== "$0", `the total spend is "${total}"`);
  });

  await step("full-page screenshot", async () => {
    await page.screenshot({ path: opt.screenshot, fullPage: true });
  });

  await step("delete the key; it disappears and stops working", async () => {
    await page.click("#tab-keys");
    const row = rowOf("#keys-table", KEY_ALIAS);
    await row.waitFor();
    let asked = "";
    page.once("dialog", (d) => {
      asked = d.message();
      d.accept();
    });
    await row.locator("button.delete-key").click();
    await row.waitFor({ state: "detached" });
    check(asked.includes(KEY_ALIAS), `the confirm dialog did not name the key: "${asked}"`);
    await eventually(async () => (await chat(secret, "hello")).status === 401,
      "the deleted key to be refused with 401", 10_000);
  });

  await step("delete the team; it disappears", async () => {
    await page.click("#tab-teams");
    const row = rowOf("#teams-table", TEAM_ALIAS);
    await row.waitFor();
    page.once("dialog", (d) => d.accept());
    await row.locator("button.delete-team").click();
    await row.waitFor({ state: "detached" });
  });

  await step("no page errors and nothing blocked by the CSP", async () => {
    check(pageProblems.length === 0, pageProblems.join("\n"));
  });
} catch (e) {
  failed = true;
  console.error(`admin_ui: FAILED at "${current}": ${e.message}`);
  if (pageProblems.length) console.error(`admin_ui: page problems:\n${pageProblems.join("\n")}`);
  await page.screenshot({ path: `${opt.screenshot}.failure.png`, fullPage: true }).catch(() => {});
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
