// The meshd command itself: flag errors, graceful shutdown, the admin API, and
// a bad routes file edit that must not cost the table.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Backend, freePort, get, waitFor } from '../support/net.js';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/main.js');
const children = new Set<ChildProcess>();
after(() => { for (const c of children) c.kill('SIGKILL'); });

function run(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH, ...env }, timeout: 10_000 });
}

describe('meshd command', () => {
  it('prints help', () => {
    const r = run(['--help']);
    assert.equal(r.status, 0);
    assert.match(r.stdout, /--provider/);
    assert.match(r.stdout, /MESHD_/);
  });

  it('refuses a bad flag or env value at start with one line naming it', () => {
    for (const [args, env, re] of [
      [['--health-interval', 'often'], {}, /^meshd: --health-interval: must be a duration/],
      [[], { MESHD_ADMIN_ADDR: 'nope' }, /^meshd: --admin-addr: must be HOST:PORT/],
      [['--admin-token-file', '/nonexistent/admin-token'], {}, /^meshd: --admin-token-file: cannot read \/nonexistent\/admin-token \(ENOENT\)/],
    ] as const) {
      const r = run([...args], { ...env });
      assert.equal(r.status, 2);
      assert.match(r.stderr, re);
      assert.equal(r.stderr.trim().split('\n').length, 1);
    }
  });

  it('serves the admin API, keeps the last good table on a bad edit, and drains on SIGTERM', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshd-cli-'));
    const routes = path.join(dir, 'routes.yml');
    const slow = await new Backend('slow', (req, res) => {
      if (req.url === '/slow') setTimeout(() => res.end('finished'), 800);
      else res.end('fast');
    }).start();
    const [port, admin] = [await freePort(), await freePort()];
    fs.writeFileSync(routes, `routes:\n  - { name: web, publish: ${port}, mode: http, backends: ["${slow.address}"] }\n`);
    const child = spawn(process.execPath, [MAIN, '--provider', 'file', '--routes', routes, '--listen-host', '127.0.0.1', '--admin-addr', `127.0.0.1:${admin}`, '--drain-timeout', '5s'], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let logs = '';
    child.stdout!.on('data', (c) => (logs += c));
    try {
      await waitFor(async () => (await get(admin, '/readyz')).status === 200, 10_000, 'readyz');
      assert.equal((await get(port)).body, 'fast');
      assert.equal((await get(admin, '/healthz')).status, 200);
      const metrics = (await get(admin, '/metrics')).body;
      assert.match(metrics, new RegExp(`meshd_backend_requests_total\\{route="web",port="${port}",backend="${slow.address}",node=""\\} 1`));
      assert.match(metrics, /meshd_table_version 1/);
      const table = JSON.parse((await get(admin, '/api/routes')).body);
      assert.equal(table.routes[0].backends[0].address, slow.address);
      assert.equal(table.routes[0].backends[0].state, 'active');

      fs.writeFileSync(routes, 'routes: [ { name: web, publish: nope');
      await waitFor(async () => JSON.parse((await get(admin, '/api/routes')).body).discoveryError, 5000, 'error shown');
      assert.match(JSON.parse((await get(admin, '/api/routes')).body).discoveryError, /not valid YAML/);
      assert.equal((await get(port)).body, 'fast', 'the last good table still serves');
      assert.match((await get(admin, '/metrics')).body, /meshd_discovery_errors_total\{provider="file"\} [1-9]/);
      assert.match(logs, /keeping the last good table/);

      const inFlight = get(port, '/slow');
      await new Promise((r) => setTimeout(r, 150));
      const exited = new Promise<number | null>((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await waitFor(async () => {
        try { await get(port); return false; } catch { return true; }
      }, 3000, 'listener closed after SIGTERM');
      assert.deepEqual(await inFlight.then((r) => [r.status, r.body]), [200, 'finished'], 'in-flight request finished');
      assert.equal(await exited, 0);
    } finally {
      child.kill('SIGKILL');
      await slow.kill();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
