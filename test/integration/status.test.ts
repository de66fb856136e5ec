// `meshd status` against a real meshd on loopback: the table as text, the raw
// answer with --json, and the exit code scripts gate on.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { TestMeshd } from '../support/meshd.js';
import { Backend, freePort, get, waitFor } from '../support/net.js';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/main.js');

function status(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, 'status', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('meshd status', () => {
  let m: TestMeshd;
  let web: Backend;
  let api: Backend;
  let port: number;
  let admin: string;

  before(async () => {
    port = await freePort();
    web = await new Backend('web').start();
    api = await new Backend('api').start();
    m = await new TestMeshd().start([
      { name: 'web', publish: port, mode: 'http', backends: [web.address], health: { path: '/health' } },
      { name: 'api', publish: port, mode: 'http', hosts: ['api.local.dev'], backends: [api.address], health: { path: '/health' } },
    ]);
    admin = `127.0.0.1:${m.adminPort}`;
    await waitFor(() => [...m.meshd.table.allBackends()].every((b) => b.eligible), 5000, 'backends healthy');
  });
  after(async () => {
    await m.stop();
    await web.kill();
    await api.kill();
  });

  it('prints every route with its backends and exits 0 while all have a healthy backend', async () => {
    const r = await status(['--admin-addr', admin]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^${port}/http  web  1/1 backends healthy$`, 'm'));
    assert.match(r.stdout, new RegExp(`^${port}/http  api hosts api.local.dev  1/1 backends healthy$`, 'm'));
    assert.match(r.stdout, new RegExp(`^  ${web.address.replace(/\./g, '\\.')}\\s+-\\s+active\\s+probe up\\s+0\\s+0\\s+0$`, 'm'));
  });

  it('prints the admin answer as it is with --json', async () => {
    const r = await status(['--admin-addr', admin, '--json']);
    assert.equal(r.code, 0);
    assert.deepEqual(JSON.parse(r.stdout).routes.map((x: { name: string }) => x.name).sort(), ['api', 'web']);
    assert.equal(JSON.parse(r.stdout).version, JSON.parse((await get(m.adminPort, '/api/routes')).body).version);
  });

  it('exits 1 and shows the backend out when a route has no healthy backend', async () => {
    await api.kill();
    await waitFor(() => [...m.meshd.table.allBackends()].some((b) => !b.eligible), 5000, 'api backend out');
    const r = await status(['--admin-addr', admin]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /api hosts api\.local\.dev {2}0\/1 backends healthy/);
    assert.match(r.stdout, /\s+out\s+probe (down|up, ejected)/);
  });

  it('exits 2 with one line when the admin API cannot be read, and on a bad argument', async () => {
    const r = await status(['--admin-addr', `127.0.0.1:${await freePort()}`]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^meshd status: cannot read http:\/\/127\.0\.0\.1:\d+\/api\/routes: /);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    const bad = await status(['--nope']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /unknown argument "--nope"/);
  });

  it('reads a table page by page: the admin API answers a page and the offset of the next', async () => {
    const page = async (q: string) => {
      const r = await get(m.adminPort, `/api/routes${q}`);
      return { status: r.status, body: JSON.parse(r.body) as { total?: number; offset?: number; next?: number | null; routes?: { name: string }[]; error?: string } };
    };
    const first = await page('?limit=1');
    assert.deepEqual([first.status, first.body.total, first.body.offset, first.body.next, first.body.routes!.map((r) => r.name)], [200, 2, 0, 1, ['api']]);
    const last = await page('?offset=1&limit=1');
    assert.deepEqual([last.body.next, last.body.routes!.map((r) => r.name)], [null, ['web']]);
    for (const bad of ['?limit=0', '?limit=10001', '?offset=-1', '?limit=x']) assert.equal((await page(bad)).status, 400, bad);
    // The api route has had no healthy backend since an earlier case: exit 1, with both pages read.
    const r = await status(['--admin-addr', admin, '--page-size', '1', '--json']);
    assert.equal(r.code, 1, r.stderr);
    assert.deepEqual((JSON.parse(r.stdout) as { routes: { name: string }[] }).routes.map((x) => x.name), ['api', 'web'], 'both pages, in order');
    const text = await status(['--admin-addr', admin, '--page-size', '1']);
    assert.equal(text.code, 1, text.stderr);
    assert.match(text.stdout, /web {2}1\/1 backends healthy/);
    assert.match(text.stdout, /api hosts api\.local\.dev/);
  });
});
