// The dashboard in a real browser (Debian's chromium, driven by puppeteer-core):
// the page loads cleanly, shows the routes and their backends, and follows a
// backend that dies without a reload.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import puppeteer, { type Page } from 'puppeteer-core';
import { TestMeshd } from '../support/meshd.js';
import { Backend, freePort, get, waitFor } from '../support/net.js';

const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOT = path.join(os.tmpdir(), 'meshd-dashboard.png');

/** Console errors and warnings, script errors, failed requests and HTTP errors the page meets. */
function watch(page: Page): string[] {
  const problems: string[] = [];
  page.on('console', (msg) => { if (msg.type() === 'error' || msg.type() === 'warn') problems.push(`console ${msg.type()}: ${msg.text()}`); });
  page.on('pageerror', (err) => problems.push(`page error: ${(err as Error).message}`));
  // The event stream is cut when the page closes; that is no failure.
  page.on('requestfailed', (req) => { if (!req.url().endsWith('/api/events')) problems.push(`request failed: ${req.url()} ${req.failure()?.errorText}`); });
  page.on('response', (res) => { if (res.status() >= 400) problems.push(`${res.status()} ${res.url()}`); });
  return problems;
}

describe('dashboard', () => {
  it('shows the routes and turns a killed backend out within 2 s, without a reload', async (t) => {
    const web1 = await new Backend('web-1').start();
    t.after(() => web1.kill());
    const web2 = await new Backend('web-2').start();
    t.after(() => web2.kill().catch(() => {}));
    const api = await new Backend('api').start();
    t.after(() => api.kill());
    const [webPort, apiPort] = [await freePort(), await freePort()];
    const m = new TestMeshd();
    t.after(() => m.stop());
    await m.start([
      { name: 'web', publish: webPort, mode: 'http', paths: ['/app'], lb: 'least-conn', sticky: 'cookie:SID', backends: [web1.address, web2.address], health: { path: '/health' } },
      // A timeout above the interval: a problem the page must show in words.
      { name: 'api', publish: apiPort, mode: 'tcp', backends: [api.address], health: { interval: '200ms', timeout: '1s' } },
    ]);
    await waitFor(() => [...m.meshd.table.allBackends()].every((b) => b.eligible), 5000, 'backends healthy');

    const browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
    t.after(() => browser.close());
    const page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 820 });
    const problems = watch(page);

    const admin = `http://127.0.0.1:${m.adminPort}`;
    const card = (route: string, address: string, state: string) => `[data-route="${route}"] [data-backend="${address}"][data-state="${state}"]`;
    await page.goto(`${admin}/`, { waitUntil: 'load', timeout: 10_000 });
    for (const [route, address] of [[`${webPort} web`, web1.address], [`${webPort} web`, web2.address], [`${apiPort} api`, api.address]] as const) {
      await page.waitForSelector(card(route, address, 'active'), { timeout: 5000 });
    }
    const text = await page.$eval('body', (b) => b.innerText);
    assert.match(text, new RegExp(`:${webPort}\\s+HTTP`));
    assert.match(text, new RegExp(`:${apiPort}\\s+TCP`));
    assert.match(text, /table v1/);
    assert.match(text, /routes file/);
    assert.match(text, /\blive\b/);
    assert.match(await page.$eval(`[data-route="${apiPort} api"] .problems`, (e) => (e as HTMLElement).innerText), /timeout .*interval/i);
    assert.equal(await page.$$eval(`[data-route="${webPort} web"] .card`, (cards) => cards.length), 2);
    const web = await page.$eval(`[data-route="${webPort} web"]`, (e) => (e as HTMLElement).innerText);
    for (const shown of [/\/app/, /least-conn/, /sticky cookie SID/]) assert.match(web, shown);

    // Traffic shows as a rate on the page.
    for (let i = 0; i < 30; i++) assert.equal((await get(webPort, '/app')).status, 200);
    await page.waitForFunction((sel) => {
      const dd = document.querySelector(sel);
      return dd !== null && Number(dd.textContent) > 0;
    }, { timeout: 3000 }, `[data-route="${webPort} web"] [data-backend="${web1.address}"] .card-stats div:nth-child(2) dd`);

    // The page is not reloaded: a mark left on the window survives the change.
    await page.evaluate(() => { (window as unknown as { mark: number }).mark = 1; });
    let tableAt = 0;
    m.meshd.table.on('health', (b) => { if (!tableAt && `${b.host}:${b.port}` === web2.address && !b.eligible) tableAt = Date.now(); });
    const killedAt = Date.now();
    await web2.kill();
    await page.waitForSelector(card(`${webPort} web`, web2.address, 'out'), { timeout: 2000 });
    const shownAt = Date.now();
    const elapsed = shownAt - killedAt;
    t.diagnostic(`killed backend shown out ${elapsed} ms after the kill (${tableAt - killedAt} ms for the probes to take it out, ${shownAt - tableAt} ms from the table to the page)`);
    assert.ok(elapsed < 2000, `${elapsed} ms`);
    assert.equal(await page.evaluate(() => (window as unknown as { mark?: number }).mark), 1, 'the page was not reloaded');
    assert.match(await page.$eval(card(`${webPort} web`, web2.address, 'out'), (e) => (e as HTMLElement).innerText), /probe down.*ECONNREFUSED/s);
    assert.equal(await page.$$eval(`[data-route="${webPort} web"] [data-state="active"]`, (cards) => cards.length), 1, 'the other backend stays active');

    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    t.diagnostic(`screenshot: ${SCREENSHOT}`);
    assert.deepEqual(problems, []);
  });

  it('asks for the admin token, then streams with the session cookie', async (t) => {
    const TOKEN = 'b1d4e7a0c3f62958';
    const web = await new Backend('web').start();
    t.after(() => web.kill());
    const m = new TestMeshd();
    t.after(() => m.stop());
    const file = path.join(m.dir, 'admin-token');
    fs.writeFileSync(file, TOKEN);
    const webPort = await freePort();
    await m.start([{ name: 'web', publish: webPort, mode: 'http', backends: [web.address], health: { path: '/health' } }], ['--admin-token-file', file]);

    const browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
    t.after(() => browser.close());
    const page = await browser.newPage();
    const problems = watch(page);
    const admin = `http://127.0.0.1:${m.adminPort}`;

    await page.goto(`${admin}/`, { waitUntil: 'load', timeout: 10_000 });
    assert.equal(await page.$('[data-route]'), null, 'no data before signing in');
    assert.deepEqual(problems, [], 'the sign-in page loads cleanly');
    await page.type('#token', 'not-the-token');
    await Promise.all([page.waitForNavigation({ timeout: 5000 }), page.click('button[type=submit]')]);
    assert.match(await page.$eval('.login-error', (e) => (e as HTMLElement).innerText), /not the one/);
    // A wrong token answers 401, which the browser logs; nothing else may appear.
    assert.deepEqual(problems.splice(0).sort(), [`401 ${admin}/login`, 'console error: Failed to load resource: the server responded with a status of 401 (Unauthorized)'].sort());

    await page.type('#token', TOKEN);
    await Promise.all([page.waitForNavigation({ timeout: 5000 }), page.click('button[type=submit]')]);
    await page.waitForSelector(`[data-route="${webPort} web"] [data-backend="${web.address}"]`, { timeout: 5000 });
    const [cookie] = await browser.cookies();
    assert.equal(cookie?.httpOnly, true);
    assert.equal(cookie?.sameSite, 'Strict');
    assert.equal(await page.evaluate(() => document.cookie), '', 'the session is out of the page script\'s reach');

    assert.deepEqual(problems, []);
  });
});
