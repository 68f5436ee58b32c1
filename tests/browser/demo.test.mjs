// The demo in a real browser: what a clinician and an admin click, in Debian's Chromium.
// Run: node --test demo.test.mjs (needs target/debug/chartbridge-demo; .ci/run builds it).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createWriteStream, mkdtempSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const AXE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
const BIN = process.env.CHARTBRIDGE_DEMO_BIN ?? join(import.meta.dirname, "../../target/debug/chartbridge-demo");
const HINT = "http://127.0.0.1:18280";
let demo, browser, context;
const problems = [];

before(async () => {
  demo = spawn(BIN, ["--port", "18280", "--app-port", "18281", "--partners-port", "18282",
    "--data-dir", mkdtempSync(join(tmpdir(), "chartbridge-browser-"))], { stdio: ["ignore", "pipe", "pipe"] });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the demo did not start")), 30000);
    demo.stdout.on("data", (chunk) => {
      if (String(chunk).includes("demo is running")) { clearTimeout(timer); resolve(); }
    });
    demo.on("exit", (code) => reject(new Error(`the demo exited with ${code}`)));
  });
  // The demo's own log, for reading after a failure (DEMO_LOG names the file).
  if (process.env.DEMO_LOG) {
    const log = createWriteStream(process.env.DEMO_LOG);
    demo.stdout.pipe(log);
    demo.stderr.pipe(log);
  }
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  context = await browser.newContext({ viewport: { width: 1100, height: 1100 } });
  // A step that hangs fails with its locator instead of the whole test timing out.
  context.setDefaultTimeout(20000);
  // Any console error (a CSP violation, a failed htmx request) fails the run.
  context.on("page", (page) => watch(page));
});

// A test that provokes an error on purpose lists it on its page (`expect(page, status, url)`);
// anything else logged as an error is a problem.
function watch(page) {
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    const text = m.text();
    const url = m.location()?.url ?? "";
    // The browser's "status of 401" for the resource, and htmx's "Error Code 401 from /path".
    const intended = (page.expected ?? []).some((e) =>
      (text.includes(`status of ${e.status}`) || text.includes(`Error Code ${e.status} from`)) &&
      e.url.test(`${text} ${url}`));
    if (!intended) problems.push(`${page.url()}: ${text} (${url})`);
  });
  page.on("pageerror", (e) => problems.push(`${page.url()}: ${e.message}`));
}

function expect(page, status, url) {
  (page.expected ??= []).push({ status, url });
}

// What a frame's htmx requests would send once the session is gone (idle, or too old): the
// server no longer knows the key.
async function endSession(frame) {
  await frame.locator("body").evaluate((body) =>
    body.setAttribute("hx-headers", JSON.stringify({ "x-hint-session-key": "ended-session-key-0000" })));
}

after(async () => {
  await browser?.close();
  demo?.kill("SIGTERM");
});

test("a clinician runs a Tiep visit from the chart and reopens the signed result", { timeout: 90000 }, async () => {
  const page = await context.newPage();
  await page.goto(`${HINT}/?as=clinician`);
  await page.getByRole("link", { name: "Open chart" }).first().click();
  const frame = page.frameLocator("iframe[title=Chartbridge]");
  await frame.getByRole("heading", { name: "Ava Thompson" }).waitFor();

  const [tiep] = await Promise.all([
    context.waitForEvent("page"),
    frame.getByRole("button", { name: "Start Tiep scribe" }).click(),
  ]);
  await tiep.waitForLoadState();
  assert.equal(await tiep.locator("#patient-name").textContent(), "Ava Thompson");
  await tiep.locator("#f-reason").fill("Shoulder pain after tennis");
  await tiep.locator("#f-pain-level").fill("6");
  await tiep.getByRole("button", { name: "Save report" }).click();
  await tiep.getByText("Report saved").waitFor();
  await tiep.close();

  // The chart in Hint ends signed (the write-back runs in the background).
  let signed = 0;
  for (let i = 0; i < 60 && signed === 0; i++) {
    await page.reload();
    signed = await page.locator('tr[data-status="signed"]').count();
    if (!signed) await page.waitForTimeout(250);
  }
  assert.equal(signed, 1, "the interaction is signed in the Hint chart");
  // The frame's visit list refreshes by itself (htmx polling with the session header).
  await frame.getByText("Completed").first().waitFor();

  // The note itself is in the Hint chart, readable without opening Chartbridge.
  let notes = 0;
  for (let i = 0; i < 60 && notes === 0; i++) {
    notes = await page.locator('article.document[data-document-status="signed"]').count();
    if (!notes) { await page.waitForTimeout(250); await page.reload(); }
  }
  assert.equal(notes, 1, "one signed document in the Hint chart");
  const note = page.locator("article.document .document-body");
  assert.match(await note.textContent(), /Reason for visit: Shoulder pain after tennis/);
  assert.match(await note.textContent(), /Pain level: 6/);

  await page.getByRole("link", { name: "Reopen in Chartbridge" }).click();
  const reopened = page.frameLocator("iframe[title=Chartbridge]");
  await reopened.getByText("Shoulder pain after tennis").waitFor();
  await reopened.getByText("Pain level").waitFor();
  await page.screenshot({ path: join(tmpdir(), "chartbridge-reopened.png") });
});

test("patient search works inside the frame with no cookies", { timeout: 90000 }, async () => {
  const page = await context.newPage();
  await page.goto(`${HINT}/embed/core_page?as=clinician`);
  const frame = page.frameLocator("iframe[title=Chartbridge]");
  const search = frame.getByRole("searchbox", { name: "Search patients" });
  await search.fill("Nguyen");
  await frame.getByText("Mia Nguyen").waitFor();
  // Words in any order; a name with an accent, typed with or without it.
  await search.fill("thompson ava");
  await frame.getByRole("link", { name: "Ava Thompson" }).waitFor();
  for (const typed of ["chloe dub", "Chloé"]) {
    await search.fill(typed);
    await frame.getByRole("link", { name: "Chloé Dubois" }).waitFor();
  }
  // By keyboard: down into the results, Enter opens the patient's chart.
  await search.press("ArrowDown");
  await frame.getByRole("link", { name: "Chloé Dubois" }).press("Enter");
  await frame.getByRole("heading", { level: 1, name: "Chloé Dubois" }).waitFor();
  assert.equal((await context.cookies()).length, 0, "no cookies were set");
});

test("an admin saves the Tiep settings in the frame", { timeout: 90000 }, async () => {
  const page = await context.newPage();
  await page.goto(`${HINT}/embed/settings?as=admin`);
  const frame = page.frameLocator("iframe[title=Chartbridge]");
  await frame.getByRole("heading", { name: "Tiep scribe" }).waitFor();
  const url = await frame.locator("#tiep-webhook-url").textContent();
  assert.match(url, /\/webhooks\/tiep\/pra-/);
  const tiepSection = frame.locator("#tiep-settings");
  await tiepSection.getByRole("button", { name: "Copy" }).click();
  await tiepSection.getByRole("button", { name: /Copied|Selected/ }).waitFor();
  await frame.getByRole("button", { name: "Save Tiep settings" }).click();
  await frame.getByText("Saved.").waitFor();
  await page.screenshot({ path: join(tmpdir(), "chartbridge-settings.png") });
});

test("a settings save shows its progress, cannot be sent twice, and says what it did in view", { timeout: 90000 }, async () => {
  const page = await context.newPage();
  // A slow save: the answer is held back a second.
  let posts = 0;
  await page.route("**/hint/settings/hcw", async (route) => {
    posts += 1;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await route.continue();
  });
  await page.goto(`${HINT}/embed/settings?as=admin`);
  const frame = page.frameLocator("iframe[title=Chartbridge]");
  const save = frame.getByRole("button", { name: "Save HCW@Home settings" });
  await settled(page);
  await save.click();
  await frame.locator("#hcw-settings").getByText("Saving…").waitFor();
  assert.ok(await save.isDisabled(), "no second send while the first is on its way");
  await save.click({ force: true, trial: false }).catch(() => {});
  const saved = frame.locator("#hcw-settings [role=status]");
  await saved.waitFor();
  assert.equal((await saved.textContent()).trim(), "Saved. HCW@Home video visit accepted the settings.");
  assert.equal(posts, 1, "one save sent");
  // In view in Hint's page (the SDK sizes the frame to the page, so Hint's page scrolls).
  const box = await saved.boundingBox();
  const viewport = page.viewportSize();
  assert.ok(box.y >= 0 && box.y + box.height <= viewport.height, "the outcome is in view");
});

test("credentials the partner refuses are not saved unasked, Test connection says so, and the status shows it", { timeout: 90000 }, async () => {
  const page = await context.newPage();
  expect(page, 422, /\/hint\/settings\/hcw/);
  await page.goto(`${HINT}/embed/settings?as=admin`);
  const frame = page.frameLocator("iframe[title=Chartbridge]");
  const section = frame.locator("#hcw-settings");
  const password = section.locator("input[name=service_password]");
  await password.waitFor();
  await page.waitForLoadState("networkidle");
  await password.fill("not-the-password");
  await settled(page);
  await section.getByRole("button", { name: "Save HCW@Home settings" }).click();
  const refused = section.getByRole("alert");
  await refused.getByText("HCW@Home refused the service account's email or password").waitFor();
  assert.match(await refused.textContent(), /^Not saved:/);
  assert.equal(await password.inputValue(), "not-the-password", "what was typed is still there");
  await section.getByRole("button", { name: "Save anyway" }).click();
  await section.locator(".warn").getByText("Saved, though HCW@Home refused").waitFor();
  assert.equal((await section.locator(".health .badge").textContent()).trim(), "Failing");
  await section.getByRole("button", { name: "Test connection" }).click();
  await section.getByRole("alert").getByText("The test failed: HCW@Home refused the service account's email or password.").waitFor();
  // At a glance, at the top of the page.
  await frame.locator("nav.sections li", { hasText: "HCW@Home" }).getByText(/Failing since/).waitFor();
  await page.screenshot({ path: join(tmpdir(), "chartbridge-hcw-failing.png") });
  // Put right: the sandbox's real password.
  await section.locator("input[name=service_password]").fill("hcw-sandbox-scheduler-password");
  await section.getByRole("button", { name: "Save HCW@Home settings" }).click();
  await section.getByRole("status").getByText("Saved. HCW@Home video visit accepted the settings.").waitFor();
  assert.equal((await section.locator(".health .badge").textContent()).trim(), "Connected");
});

test("a refused field is marked invalid, tied to its message, and gets the focus", { timeout: 90000 }, async () => {
  const page = await context.newPage();
  expect(page, 422, /\/hint\/settings\/mediquo/);
  await page.goto(`${HINT}/embed/settings?as=admin`);
  const frame = page.frameLocator("iframe[title=Chartbridge]");
  const section = frame.locator("#mediquo-settings");
  const signature = section.locator("input[name=signature]");
  await signature.waitFor();
  await page.waitForLoadState("networkidle");
  await signature.fill("too-short");
  await section.getByRole("button", { name: "Save MediQuo settings" }).click();
  await section.getByRole("alert").waitFor();
  const field = section.locator("input[name=signature]");
  await frame.locator("#mediquo-settings input[aria-invalid=true]").waitFor();
  assert.equal(await field.getAttribute("aria-describedby"), "mediquo-settings-error");
  assert.ok(await field.evaluate((el) => el === document.activeElement), "the focus is on the field");
});

test("a session that ends in the frame says so, during a search and a settings save, and keeps what was typed", { timeout: 90000 }, async () => {
  const page = await context.newPage();
  expect(page, 401, /\/hint\//);
  await page.goto(`${HINT}/embed/core_page?as=clinician`);
  let frame = page.frameLocator("iframe[title=Chartbridge]");
  await frame.getByRole("searchbox", { name: "Search patients" }).waitFor();
  await page.waitForLoadState("networkidle");
  await endSession(frame);
  await frame.getByRole("searchbox", { name: "Search patients" }).fill("Nguyen");
  const ended = frame.getByRole("alert").filter({ hasText: "Your Chartbridge session has ended" });
  await ended.waitFor();
  assert.match(await ended.textContent(), /Reopen Chartbridge from Hint/);
  assert.equal(await frame.getByRole("searchbox", { name: "Search patients" }).inputValue(), "Nguyen");

  await page.goto(`${HINT}/embed/settings?as=admin`);
  frame = page.frameLocator("iframe[title=Chartbridge]");
  const queue = frame.locator("#hcw-settings input[name=queue]");
  await queue.waitFor();
  await page.waitForLoadState("networkidle");
  await endSession(frame);
  await queue.fill("Evening clinic");
  await settled(page);
  await frame.getByRole("button", { name: "Save HCW@Home settings" }).click();
  await frame.getByRole("alert").filter({ hasText: "Your Chartbridge session has ended" }).waitFor();
  assert.equal(await queue.inputValue(), "Evening clinic", "what the admin typed is still there");
  await page.screenshot({ path: join(tmpdir(), "chartbridge-session-ended.png") });
});

test("every surface and error page fits the 1024×768 frame with no sideways scroll, and axe finds nothing", { timeout: 120000 }, async () => {
  // The key Hint gave each user's frame, then every page loaded as the frame would load it.
  const keyOf = async (who, surface) => {
    const hint = await context.newPage();
    if (surface === "clinical_chart") {
      await hint.goto(`${HINT}/?as=${who}`);
      await hint.getByRole("link", { name: "Open chart" }).first().click();
    } else {
      await hint.goto(`${HINT}/embed/${surface}?as=${who}`);
    }
    const src = await hint.locator("iframe[title=Chartbridge]").getAttribute("src");
    await hint.close();
    return { src, key: new URL(src).searchParams.get("session_key") };
  };
  const clinician = await keyOf("clinician", "core_page");
  const admin = await keyOf("admin", "settings");
  const chart = await keyOf("clinician", "clinical_chart");
  const app = new URL(clinician.src).origin;
  // (axe is injected through the devtools protocol: our CSP allows no inline script.)
  const frameSized = await browser.newContext({ viewport: { width: 1024, height: 768 }, bypassCSP: true });
  const page = await frameSized.newPage();
  watch(page);
  expect(page, 401, /\/hint\//);
  expect(page, 404, /\/hint\//);
  expect(page, 403, /\/hint\//);
  const pages = [
    clinician.src,
    admin.src,
    chart.src,
    `${app}/hint/audit?session_key=${admin.key}`,
    `${app}/hint/clinical_interaction?visit_id=vis_nowhere&session_key=${clinician.key}`,
    `${app}/hint/core_page?session_key=ended-session-key-0000`,
    `${app}/hint/settings?session_key=${clinician.key}`,
  ];
  // The chart's launch forms (HCW@Home, Haidy) too.
  await page.goto(chart.src);
  pages.push(...await page.locator("a.launch").evaluateAll((links) => links.map((a) => a.href)));
  assert.ok(pages.length >= 9, "the launch forms are among them");
  for (const url of pages) {
    await page.goto(url);
    const [scroll, client] = await page.evaluate(() =>
      [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
    assert.ok(scroll <= client, `${url}: ${scroll} px wide in ${client} px`);
    assert.equal(await page.locator("header.bar").count(), 1, `${url} has the app's header`);
    assert.equal(await page.locator("h1").count(), 1, `${url} has one h1`);
    await page.evaluate(AXE);
    const violations = await page.evaluate(async () => {
      const result = await window.axe.run(document, {
        runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] },
      });
      return result.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
    });
    assert.deepEqual(violations, [], `${url}: WCAG 2.1 A/AA`);
  }
  await frameSized.close();
});

test("cancelling a visit asks first, and the page ends showing Hint's deleted", { timeout: 90000 }, async () => {
  const page = await context.newPage();
  await page.goto(`${HINT}/?as=clinician`);
  await page.locator("tr", { hasText: "Noah Bennett" }).getByRole("link", { name: "Open chart" }).click();
  const frame = page.frameLocator("iframe[title=Chartbridge]");
  const [tiep] = await Promise.all([
    context.waitForEvent("page"),
    frame.getByRole("button", { name: /^Start Tiep scribe/ }).click(),
  ]);
  await tiep.waitForLoadState();
  await tiep.close();
  await frame.getByRole("link", { name: /^Open the Tiep.* visit of Noah Bennett/ }).first().click();
  await frame.getByRole("button", { name: "Cancel visit" }).click();
  const ask = frame.getByRole("alertdialog");
  await ask.getByText("This cannot be undone").waitFor();
  await ask.getByRole("button", { name: "Keep" }).click();
  assert.equal(await frame.getByRole("alertdialog").count(), 0, "kept: nothing happened");
  await frame.getByRole("button", { name: "Cancel visit" }).click();
  await frame.getByRole("alertdialog").getByRole("button", { name: "Yes, cancel visit" }).click();
  await frame.locator(".meta").getByText("Cancelled").waitFor();
  // The page keeps looking until Hint's chart says so too.
  await frame.getByText("In Hint as deleted").waitFor({ timeout: 30000 });
});

test("a MediQuo consultation sent from sandbox MediQuo lands signed in the chart", { timeout: 90000 }, async () => {
  const mediquo = await context.newPage();
  await mediquo.goto("http://127.0.0.1:18283/");
  const row = mediquo.locator("tr", { hasText: "Liam Carter" });
  await row.getByRole("button", { name: "Finish a consultation" }).click();
  await mediquo.getByText("the integrator answered HTTP 200").waitFor();

  const page = await context.newPage();
  await page.goto(`${HINT}/?as=clinician`);
  await page.locator("tr", { hasText: "Liam Carter" }).getByRole("link", { name: "Open chart" }).click();
  let signed = 0;
  for (let i = 0; i < 60 && signed === 0; i++) {
    signed = await page.locator('tr[data-status="signed"]').count();
    if (!signed) { await page.waitForTimeout(250); await page.reload(); }
  }
  assert.equal(signed, 1, "the MediQuo interaction is signed in the Hint chart");
  await page.getByRole("link", { name: "Reopen in Chartbridge" }).click();
  const reopened = page.frameLocator("iframe[title=Chartbridge]");
  await reopened.getByText("Consultation finished on MediQuo").waitFor();
  await reopened.getByText("Penicillin").waitFor();
});

test("a clinician runs an HCW@Home video visit from the frame: invite, patient joins, doctor signs in, finish", { timeout: 90000 }, async () => {
  const page = await context.newPage();
  await page.goto(`${HINT}/?as=clinician`);
  await page.locator("tr", { hasText: "Riley Morgan" }).getByRole("link", { name: "Open chart" }).click();
  const frame = page.frameLocator("iframe[title=Chartbridge]");
  await frame.getByRole("link", { name: "Start HCW@Home video visit" }).click();
  // Hint records Riley's sex as "unknown": the clinician chooses, nothing is guessed.
  await frame.getByLabel(/Gender HCW@Home should show/).selectOption("female");
  // A double click sends the form once: one invite, one visit.
  await frame.getByRole("button", { name: "Create the invitation" }).dblclick();
  await frame.getByText("Patient link:").waitFor();
  const patientUrl = (await frame.locator("#hcw-patient-url").textContent()).trim();

  const patient = await context.newPage();
  await patient.goto(patientUrl);
  await patient.getByRole("button", { name: "Join the video consultation" }).click();
  await patient.getByText("You are in the waiting room").waitFor();

  const [doctor] = await Promise.all([
    context.waitForEvent("page"),
    frame.getByRole("button", { name: /^Open HCW@Home as doctor/ }).click(),
  ]);
  await doctor.waitForLoadState();
  await doctor.getByRole("button", { name: "Accept the call" }).click();
  await doctor.getByLabel("Comment").fill("Seen by video; rest and fluids");
  await doctor.getByRole("button", { name: "End the consultation" }).click();
  // The doctor's page reloads after ending the call; wait for it rather than closing a tab
  // mid-navigation (a close during a navigation can hang Chromium's tab).
  await doctor.getByRole("cell", { name: "closed", exact: true }).waitFor();

  // Finishing cannot be undone: it asks first.
  await frame.getByRole("button", { name: "Finish visit" }).click();
  await frame.getByRole("alertdialog").getByRole("button", { name: "Yes, finish visit" }).click();
  await frame.getByText("Seen by video; rest and fluids").waitFor();
  await frame.getByText("Completed").first().waitFor();
  let signed = 0;
  for (let i = 0; i < 60 && signed === 0; i++) {
    signed = await page.locator('tr[data-status="signed"]').count();
    if (!signed) { await page.waitForTimeout(250); await page.reload(); }
  }
  assert.equal(signed, 1, "the video visit is signed in the Hint chart");
  assert.equal(await page.locator("tr[data-status]").count(), 1, "one interaction: the double click made one visit");
});

test("a clinician sends documents to Haidy, the doctor approves, the report comes back signed", { timeout: 90000 }, async () => {
  const page = await context.newPage();
  await page.goto(`${HINT}/?as=clinician`);
  await page.locator("tr", { hasText: "Sofia Martinez" }).getByRole("link", { name: "Open chart" }).click();
  const frame = page.frameLocator("iframe[title=Chartbridge]");
  await frame.getByRole("link", { name: "Send documents to Haidy" }).click();
  await frame.getByLabel(/Documents for Haidy/).setInputFiles([
    { name: "lab.pdf", mimeType: "application/pdf", buffer: Buffer.from("%PDF-1.7\n%%EOF\n") },
    { name: "tool.exe", mimeType: "application/octet-stream", buffer: Buffer.from("MZ\u0090\u0000binary") },
  ]);
  await frame.getByRole("button", { name: "Send to Haidy" }).click();
  await frame.getByText("lab.pdf: sent to Haidy").waitFor();
  await frame.getByText(/tool.exe: Not sent/).waitFor();

  const [haidy] = await Promise.all([
    context.waitForEvent("page"),
    frame.getByRole("link", { name: "Open Haidy for this patient" }).click(),
  ]);
  await haidy.waitForLoadState();
  await haidy.getByText("lab.pdf").waitFor();
  await haidy.getByLabel("Consultation summary").first().fill("Iron levels back to normal");
  await haidy.getByRole("button", { name: "Approve the consultation report" }).click();
  await haidy.getByText("Consultation approved").waitFor();
  await haidy.close();

  // The poll collects the report; the open visit page refreshes itself.
  await frame.getByText("Iron levels back to normal").waitFor({ timeout: 30000 });
  let signed = 0;
  for (let i = 0; i < 60 && signed === 0; i++) {
    signed = await page.locator('tr[data-status="signed"]').count();
    if (!signed) { await page.waitForTimeout(250); await page.reload(); }
  }
  assert.equal(signed, 1, "the Haidy visit is signed in the Hint chart");
});

// Polls `check` (which may throw) until it holds.
// Hint's page sizes the frame to the app's page (the SDK's height reports): wait until the
// size holds still for a moment, so a click is not aimed at a frame still being resized.
async function settled(page) {
  const height = () => page.evaluate(() => document.querySelector("iframe[title=Chartbridge]").getBoundingClientRect().height);
  // First the frame's page has loaded and Hint has applied its height report (the frame is as
  // tall as the page in it): on a slow machine the frame kept its first 768 px long enough to
  // look still, and the report resized it under the click that followed (5 s at most: with no
  // SDK there is no report).
  const inner = async () => {
    const frame = page.frames().find((f) => f.parentFrame() === page.mainFrame() && f.url().includes("/hint/"));
    return frame?.evaluate(() => document.readyState === "complete" && Math.ceil(document.documentElement.getBoundingClientRect().height)).catch(() => false);
  };
  for (let i = 0; i < 50; i++) {
    const [content, outer] = [await inner(), await height()];
    if (content && Math.abs(Math.min(Math.max(content, 100), 20000) - outer) <= 1) break;
    await page.waitForTimeout(100);
  }
  let last = await height();
  for (let still = 0; still < 3;) {
    await page.waitForTimeout(100);
    const now = await height();
    still = now === last ? still + 1 : 0;
    last = now;
  }
}

async function eventually(check, what) {
  let last;
  for (let i = 0; i < 100; i++) {
    try { if (await check()) return; } catch (e) { last = e; }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.fail(`${what}${last ? ` (${last.message})` : ""}`);
}

test("with Hint's SDK the frame takes the page's height, and locks when Hint shows another patient", { timeout: 90000 }, async () => {
  const page = await context.newPage();
  // Anything that would start a visit: a launch form's post, or opening a partner's launch form.
  const launches = [];
  page.on("request", (request) => {
    if (/^\/hint\/(visits|partners\/)/.test(new URL(request.url()).pathname)) launches.push(request.url());
  });
  await page.goto(`${HINT}/?as=clinician`);
  await page.locator("tr", { hasText: "Mia Nguyen" }).getByRole("link", { name: "Open chart" }).click();
  const iframe = page.locator("iframe[title=Chartbridge]");
  const frame = page.frameLocator("iframe[title=Chartbridge]");
  await frame.getByRole("heading", { level: 1, name: "Mia Nguyen" }).waitFor();

  // Hint's page sizes the frame from the SDK's reports: the app page's own height, not the
  // frame's default 768 px.
  const contentHeight = () => frame.locator("html").evaluate((html) => Math.ceil(html.getBoundingClientRect().height));
  const frameHeight = () => iframe.evaluate((el) => el.clientHeight);
  await eventually(async () => (await frameHeight()) === (await contentHeight()), "the frame takes the page's height");
  const unlockedHeight = await frameHeight();
  assert.notEqual(unlockedHeight, 768, "not the default height");

  const start = frame.getByRole("button", { name: /^Start Tiep scribe/ });
  const formLinks = frame.locator("a.launch");
  assert.ok(await start.isEnabled());
  assert.ok(await formLinks.count() >= 2, "HCW@Home and Haidy open a launch form");

  // Hint shows another patient in place: the page locks at once.
  await page.getByLabel("Patient Hint shows").selectOption({ label: "Chloé Dubois" });
  await page.getByRole("button", { name: "Switch in place" }).click();
  const banner = frame.getByRole("alert").filter({ hasText: "Hint now shows another patient" });
  await banner.waitFor();
  assert.match(await banner.textContent(), /Chloé Dubois.*reopen Chartbridge from Chloé Dubois's chart/);
  assert.ok(await start.isDisabled(), "the launch button is disabled");
  assert.equal(await frame.locator("button:enabled, input:enabled, select:enabled, textarea:enabled").count(), 0,
    "every control is disabled");
  for (const link of await formLinks.all()) assert.equal(await link.getAttribute("aria-disabled"), "true");
  // Tried anyway: nothing is sent, the page stays.
  await start.click({ force: true }).catch(() => {});
  await formLinks.first().dispatchEvent("click");
  await page.waitForTimeout(500);
  await frame.getByRole("heading", { level: 1, name: "Mia Nguyen" }).waitFor();
  // The banner made the page taller: the frame follows.
  await eventually(async () => (await frameHeight()) === (await contentHeight()) && (await frameHeight()) > unlockedHeight,
    "the frame grows with the banner");

  // Back to this page's patient: unlocked.
  await page.getByLabel("Patient Hint shows").selectOption({ label: "Mia Nguyen" });
  await page.getByRole("button", { name: "Switch in place" }).click();
  await banner.waitFor({ state: "detached" });
  assert.ok(await start.isEnabled(), "the launch button works again");
  for (const link of await formLinks.all()) assert.equal(await link.getAttribute("aria-disabled"), null);
  await eventually(async () => (await frameHeight()) === unlockedHeight, "the frame shrinks back");

  // A remount (the app opened again, a new handshake) for another patient: that patient's page,
  // following Hint, not locked.
  await page.getByLabel("Patient Hint shows").selectOption({ label: "Chloé Dubois" });
  await page.getByRole("button", { name: /remount/ }).click();
  await frame.getByRole("heading", { level: 1, name: "Chloé Dubois" }).waitFor();
  await eventually(async () => (await frameHeight()) === (await contentHeight()), "the new frame takes its page's height");
  assert.ok(await start.isEnabled());
  assert.equal(await frame.getByRole("alert").count(), 0, "not locked");
  assert.deepEqual(launches, [], "nothing was launched");
});

test("without Hint's SDK the frame works as before", { timeout: 90000 }, async () => {
  const page = await context.newPage();
  // Hint serves no SDK.
  expect(page, 404, /hint-sdk\.js/);
  await page.route("**/hint-sdk.js", (route) => route.fulfill({ status: 404, body: "" }));
  await page.goto(`${HINT}/?as=clinician`);
  await page.locator("tr", { hasText: "Mia Nguyen" }).getByRole("link", { name: "Open chart" }).click();
  const frame = page.frameLocator("iframe[title=Chartbridge]");
  await frame.getByRole("heading", { level: 1, name: "Mia Nguyen" }).waitFor();
  assert.equal(await frame.locator("html").evaluate(() => typeof window.HintSDK), "undefined");
  assert.equal(await page.locator("iframe[title=Chartbridge]").evaluate((el) => el.clientHeight), 768,
    "the frame keeps Hint's default height");
  // Hint's page changes its patient: with no SDK the app is not told, and nothing changes.
  await page.getByLabel("Patient Hint shows").selectOption({ label: "Chloé Dubois" });
  await page.getByRole("button", { name: "Switch in place" }).click();
  await page.waitForTimeout(300);
  assert.equal(await frame.getByRole("alert").count(), 0);
  assert.ok(await frame.getByRole("button", { name: /^Start Tiep scribe/ }).isEnabled());
  // The app works: a launch form opens.
  await frame.getByRole("link", { name: "Start HCW@Home video visit" }).click();
  await frame.getByRole("heading", { level: 1, name: /HCW@Home video visit — Mia Nguyen/ }).waitFor();
});

test("no console errors or CSP violations on any page", { timeout: 90000 }, () => {
  assert.deepEqual(problems, []);
});
