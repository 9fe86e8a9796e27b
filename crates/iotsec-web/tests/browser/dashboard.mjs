// Drives the iotsec dashboard in headless Debian Chromium (playwright-core, no downloaded
// browser). Run by crates/iotsec-cli/tests/cli/browser.rs with:
//   IOTSEC_URL         https://localhost:PORT/
//   IOTSEC_TOKEN       a viewer token
//   IOTSEC_SPKI        sha256/BASE64 pin of the server key (the only certificate error ignored)
//   IOTSEC_DEVICES     number of devices expected online
//   IOTSEC_REASON      a rejection reason expected in the log (e.g. bad_signature)
//   IOTSEC_SHOTS       directory for the screenshots
//   IOTSEC_PROFILE     a fresh Chromium user-data-dir
// Prints one JSON line with what it saw; exits 1 on any failed expectation.
import { chromium } from 'playwright-core';
import path from 'node:path';
import fs from 'node:fs';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`missing ${k}`);
  return v;
};
const url = env('IOTSEC_URL');
const token = env('IOTSEC_TOKEN');
const spki = env('IOTSEC_SPKI').replace(/^sha256\//, '');
const devices = Number(env('IOTSEC_DEVICES'));
const reason = env('IOTSEC_REASON');
const shots = env('IOTSEC_SHOTS');
fs.mkdirSync(shots, { recursive: true });

const context = await chromium.launchPersistentContext(env('IOTSEC_PROFILE'), {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1280, height: 1000 },
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-quic',
    `--ignore-certificate-errors-spki-list=${spki}`,
  ],
});
const seen = { console: [], external: [] };
const origin = new URL(url).origin;
const page = context.pages()[0] || await context.newPage();
page.on('console', (m) => seen.console.push(`${m.type()}: ${m.text()}`));
page.on('request', (r) => { if (!r.url().startsWith(origin) && !r.url().startsWith('data:')) seen.external.push(r.url()); });
const shot = (name) => page.screenshot({ path: path.join(shots, `dashboard-${name}.png`), fullPage: true });

let failed = null;
try {
  await page.goto(url);
  await shot('1-signin');
  // A wrong token is refused and the page stays on sign-in.
  await page.fill('#token', 'iotsec_wrong');
  await page.click('#signin-btn');
  await page.waitForFunction(() => document.querySelector('#signin-error').textContent.includes('refused'));
  await page.fill('#token', token);
  await page.click('#signin-btn');
  await page.waitForSelector('#main:not([hidden])');
  // Fleet table: every device online.
  await page.waitForFunction((n) => document.querySelectorAll('#fleet tbody .badge.online').length === n, devices, { timeout: 30000 });
  seen.fleet = await page.$$eval('#fleet tbody tr', (rows) => rows.map((r) => ({
    id: r.dataset.id,
    state: r.querySelector('.badge').textContent,
    cells: [...r.querySelectorAll('td')].map((td) => td.textContent),
  })));
  await shot('2-fleet');
  // One device's chart has points.
  const first = seen.fleet[0].id;
  await page.click(`#fleet tbody tr[data-id="${first}"]`);
  await page.waitForFunction(() => {
    const s = document.querySelector('#charts svg');
    return s && Number(s.dataset.points) > 1 && s.querySelector('polyline');
  }, null, { timeout: 20000 });
  seen.chart = await page.$$eval('#charts svg', (ss) => ss.map((s) => ({
    series: s.dataset.series,
    points: Number(s.dataset.points),
    polyline: s.querySelector('polyline').getAttribute('points').split(' ').length,
  })));
  await page.locator('#device').scrollIntoViewIfNeeded();
  await shot('3-device');
  // The tampered message in the rejection log, by reason.
  await page.waitForSelector(`#reasons tbody tr[data-reason="${reason}"]`, { timeout: 20000 });
  await page.waitForSelector(`#recent tbody tr[data-reason="${reason}"]`, { timeout: 20000 });
  seen.reasons = await page.$$eval('#reasons tbody tr', (rows) => rows.map((r) => r.textContent));
  seen.recent = await page.$$eval('#recent tbody tr', (rows) => rows.map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent)));
  // The audit summary by OWASP category.
  await page.waitForFunction(() => document.querySelectorAll('#audit tbody tr').length >= 10, null, { timeout: 20000 });
  seen.audit = await page.$$eval('#audit tbody tr', (rows) => rows.map((r) => r.dataset.category + ' ' + r.querySelector('.badge').textContent));
  seen.live = await page.textContent('#live');
  await page.locator('#audit').scrollIntoViewIfNeeded();
  await shot('4-rejections-audit');
  if (seen.external.length) throw new Error(`external requests: ${seen.external.join(', ')}`);
  if (!seen.live.startsWith('live')) throw new Error(`live updates not running: ${seen.live}`);
} catch (e) {
  failed = e;
  await shot('failure').catch(() => {});
} finally {
  await context.close();
}
console.log(JSON.stringify(seen));
if (failed) {
  console.error(String(failed.stack || failed));
  process.exit(1);
}
