// End-to-end checks of the node's web console in headless Chromium, driven by
// tests/tests/console.rs, which starts the node and prepares its data, then runs
// `node console.mjs` with:
//   CELLA_URL       the node's base URL
//   CELLA_SCENARIO  `single` (a node with --admin-token and counter entities) or `cluster`
//   CELLA_TOKEN     the node's admin token (single)
//   CELLA_V2        a second component for `counter` (different bytes), to deploy (single)
//   CELLA_EVIL      the key of an entity made of HTML, which must show as text (single)
//   CHROMIUM        the browser (default /usr/bin/chromium)
// Every step waits on a condition with a timeout; the first failure ends the run with exit 1.

import { chromium } from 'playwright-core';

const url = process.env.CELLA_URL;
const scenario = process.env.CELLA_SCENARIO || 'single';
const WAIT = 20_000;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function step(name) {
  console.log(`ok - ${name}`);
}

/** Sends commands to `counter` keys until `stop()` is called. */
function load(base) {
  let running = true;
  let sent = 0;
  const worker = async (n) => {
    while (running) {
      const r = await fetch(`${base}/v1/entities/counter/load-${n}/add`, { method: 'POST', body: '1' });
      await r.text();
      sent += 1;
    }
  };
  const workers = [0, 1, 2, 3].map(worker);
  return async () => {
    running = false;
    await Promise.all(workers);
    return sent;
  };
}

async function single(page, dialogs) {
  const response = await page.goto(`${url}/`);
  check(response.status() === 200, `GET / answered ${response.status()}`);
  const headers = response.headers();
  check((headers['content-security-policy'] || '').includes("script-src 'self'"), `no strict CSP: ${headers['content-security-policy']}`);
  check(headers['x-content-type-options'] === 'nosniff', 'no X-Content-Type-Options: nosniff');
  await page.locator('#view h1', { hasText: 'Modules' }).waitFor({ timeout: WAIT });
  await page.locator('#view table a', { hasText: 'counter' }).waitFor({ timeout: WAIT });
  step('the console loads and lists the counter module');

  // Keyboard: Tab first reaches the skip link, which moves focus to the content; focus shows.
  await page.keyboard.press('Tab');
  const first = await page.evaluate(() => document.activeElement.textContent);
  check(first === 'Skip to content', `the first Tab stop is ${first}`);
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.activeElement.id === 'main', null, { timeout: WAIT });
  check(page.url().endsWith('#/modules'), `the skip link changed the route: ${page.url()}`);
  await page.keyboard.press('Tab');
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  check(outline !== 'none', `a focused control shows no outline (${outline})`);
  // The section links open with Enter.
  await page.locator('.sidebar a[data-section="entities"]').focus();
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => location.hash === '#/entities', null, { timeout: WAIT });
  await page.locator('#view h1', { hasText: 'Entities' }).waitFor({ timeout: WAIT });
  step('by keyboard: the skip link focuses the content, focus is visible, a section opens with Enter');

  // Find an entity through the listing, searching by prefix, and open it.
  await page.goto(`${url}/#/entities/counter`);
  await page.locator('#entity-prefix').fill('alpha');
  await page.locator('#entity-prefix').press('Enter');
  await page.waitForFunction(() => {
    const keys = [...document.querySelectorAll('#entity-list tbody tr td:first-child')].map((td) => td.textContent);
    return keys.length === 2 && keys.every((k) => k.startsWith('alpha'));
  }, null, { timeout: WAIT });
  check(page.url().includes('prefix=alpha'), `the search is not in the address: ${page.url()}`);
  const link = page.locator('#entity-list a', { hasText: 'alpha-2' });
  await link.focus();
  await page.keyboard.press('Enter');
  await page.locator('#entity-key-shown', { hasText: 'alpha-2' }).waitFor({ timeout: WAIT });
  step('an entity is found by prefix and opened');

  // Its journal, each entry with its module version.
  await page.waitForFunction(() => document.querySelectorAll('#journal li').length === 3, null, { timeout: WAIT });
  const versions = await page.locator('#journal [data-module-version]').evaluateAll((els) => els.map((e) => e.dataset.moduleVersion));
  check(versions.length === 3 && versions.every((v) => v === '1'), `journal module versions: ${versions}`);
  await page.reload();
  await page.waitForFunction(() => document.querySelectorAll('#journal li').length === 3, null, { timeout: WAIT });
  step('its journal is shown with module versions, and a reload keeps the view');

  // A key that is HTML is listed and shown as text; nothing runs.
  const evil = process.env.CELLA_EVIL;
  await page.goto(`${url}/#/entities/counter?prefix=${encodeURIComponent('<scr')}`);
  await page.waitForFunction((k) => [...document.querySelectorAll('#entity-list td:first-child')].some((td) => td.textContent === k), evil, { timeout: WAIT });
  await page.locator('#entity-list a').first().click();
  await page.waitForFunction((k) => document.getElementById('entity-key-shown')?.textContent === k, evil, { timeout: WAIT });
  await page.waitForFunction(() => document.querySelectorAll('#journal li').length === 1, null, { timeout: WAIT });
  check((await page.locator('#view script, #view img').count()) === 0, 'an element was created from data');
  check(dialogs.length === 0, `a dialog was raised: ${dialogs}`);
  step(`an entity keyed ${evil} is listed and shown as text, no dialog`);

  // An admin action without the token is refused, with the node's reason on the page.
  await page.goto(`${url}/#/modules/counter`);
  await page.waitForFunction(() => document.getElementById('active-version')?.dataset.version === '1', null, { timeout: WAIT });
  await page.locator('#deploy-file').setInputFiles(process.env.CELLA_V2);
  await page.locator('#deploy-submit').click();
  await page.locator('#flash .flash.error', { hasText: 'Authorization: Bearer' }).waitFor({ timeout: WAIT });
  const refusal = await page.locator('#flash').textContent();
  check(refusal.includes('401'), `the refusal does not name its status: ${refusal}`);
  step(`a deploy without the token is refused and says why: ${refusal}`);

  // With the token: deploy a second version from a file, then roll back to the first.
  const rendered = await page.locator('#view').getAttribute('data-rendered');
  await page.locator('#token').fill(process.env.CELLA_TOKEN);
  await page.locator('#token').press('Enter');
  await page.locator('#token-state', { hasText: 'Token set' }).waitFor({ timeout: WAIT });
  // Saving the token draws the view again (with the token): wait for that before using it.
  await page.waitForFunction((n) => document.getElementById('view').dataset.rendered !== n, rendered, { timeout: WAIT });
  await page.locator('#deploy-file').setInputFiles(process.env.CELLA_V2);
  await page.locator('#deploy-submit').click();
  await page.waitForFunction(() => document.getElementById('active-version')?.dataset.version === '2', null, { timeout: WAIT });
  step('a second version is deployed from a file (active v2)');
  await page.locator('button[data-rollback="1"]').click();
  await page.waitForFunction(() => document.getElementById('active-version')?.dataset.version === '1', null, { timeout: WAIT });
  step('rolled back to the first version (active v1)');

  // The chart of commands per second moves under load.
  await page.goto(`${url}/#/metrics`);
  const rate = page.locator('canvas[aria-label^="Commands/s — counter"]').first();
  await rate.waitFor({ timeout: WAIT });
  const stop = load(url);
  try {
    await page.waitForFunction(() => {
      const c = document.querySelector('canvas[aria-label^="Commands/s — counter"]');
      return c && Number(c.dataset.latest) > 0;
    }, null, { timeout: WAIT });
  } finally {
    const sent = await stop();
    console.log(`# ${sent} commands sent while the chart was open`);
  }
  const latest = await rate.getAttribute('data-latest');
  step(`the counter type's commands/s chart moves under load (latest ${latest}/s)`);
  check(dialogs.length === 0, `a dialog was raised: ${dialogs}`);
}

async function cluster(page) {
  await page.goto(`${url}/#/cluster`);
  await page.waitForFunction(() => document.querySelectorAll('#cluster-nodes tbody tr').length === 3, null, { timeout: WAIT });
  step('the cluster view lists 3 nodes');
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
});
let failed = false;
let page = null;
try {
  page = await browser.newPage();
  const dialogs = [];
  const errors = [];
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    d.dismiss().catch(() => {});
  });
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') console.log(`# browser console: ${m.text()}`);
  });
  page.on('request', (r) => {
    if (!r.url().startsWith(url)) errors.push(`request outside the node: ${r.url()}`);
  });
  if (scenario === 'cluster') await cluster(page);
  else await single(page, dialogs);
  check(errors.length === 0, `page errors: ${errors.join('; ')}`);
} catch (e) {
  failed = true;
  console.log(`not ok - ${e.stack || e}`);
  if (page) {
    const shown = await page.evaluate(() => `${location.hash}\n${document.getElementById('flash')?.textContent}\n${document.getElementById('view')?.innerText}`).catch(() => '');
    console.log(`# the page showed: ${shown.split('\n').join('\n# ')}`);
  }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
