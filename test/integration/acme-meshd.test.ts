// Automatic certificates through a whole meshd on loopback: a real pebble
// validates HTTP-01 on meshd's own plain-HTTP port (meshd answers the token,
// the route behind it never sees it), the https route with `tls: acme` is
// reported pending, then serves pebble's certificate with the backend's answer;
// a restart on the same storage serves it without ordering, and a 60 s
// certificate is renewed and the new one served.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../src/core/log.js';
import { TestMeshd, type FileRoute } from '../support/meshd.js';
import { Backend, freePort, get, waitFor } from '../support/net.js';
import { httpsServed, startPebble, type Pebble, type Served } from '../support/pebble.js';

const served = (port: number, host: string, ca: string) => httpsServed('127.0.0.1', port, host, ca);

const VALIDITY_S = 60;

async function metric(adminPort: number, name: string, labels: string): Promise<number> {
  const text = (await get(adminPort, '/metrics')).body;
  const m = new RegExp(`^${name}\\{${labels}\\} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

async function acmeStatus(adminPort: number): Promise<Record<string, unknown>> {
  const view = JSON.parse((await get(adminPort, '/api/routes')).body) as { routes: { name: string; acme?: Record<string, unknown> }[] };
  return view.routes.find((r) => r.name === 'site')!.acme!;
}

describe('meshd with ACME against pebble', { timeout: 180_000 }, () => {
  let pebble: Pebble;
  let root: string;
  const seen: string[] = [];
  const backend = new Backend('web', (req, res) => {
    seen.push(req.url!);
    res.end('web');
  });
  const storage = fs.mkdtempSync(path.join(os.tmpdir(), 'meshd-acme-storage-'));
  let httpPort: number;
  let httpsPort: number;
  let routes: FileRoute[];
  let flags: string[];
  let m: TestMeshd | undefined;
  const lines: string[] = [];
  let first: Served;

  const start = async () => {
    m = new TestMeshd();
    m.log = createLogger('debug', { write: (s: string) => void lines.push(s) });
    return m.start(routes, flags);
  };

  before(async () => {
    await backend.start();
    [httpPort, httpsPort] = [await freePort(), await freePort()];
    // Pebble validates HTTP-01 on meshd's plain-HTTP port, where a route sends everything else to the backend.
    pebble = await startPebble({ httpPort, validitySeconds: VALIDITY_S });
    root = await pebble.root();
    routes = [
      { name: 'plain', publish: httpPort, mode: 'http', backends: [backend.address] },
      { name: 'site', publish: httpsPort, mode: 'https', hosts: ['a.test'], tls: 'acme', backends: [backend.address] },
    ];
    flags = ['--acme-directory', pebble.directoryUrl, '--acme-ca-file', pebble.caFile, '--acme-storage', storage, '--acme-email', 'ops@a.test'];
  });

  after(async () => {
    await m?.stop();
    pebble?.stop();
    await backend.kill();
    fs.rmSync(storage, { recursive: true, force: true });
  });

  it('reports the route pending while ready, then serves pebble\'s certificate for a.test with the backend\'s answer', async () => {
    const meshd = await start();
    assert.equal((await get(meshd.adminPort, '/readyz')).status, 200, 'ready without waiting for the order');
    const pending = await acmeStatus(meshd.adminPort);
    assert.deepEqual([pending.names, pending.state, pending.ordering], [['a.test'], 'pending', true]);

    const valid = await waitFor(async () => {
      const s = await acmeStatus(meshd.adminPort);
      return s.state === 'valid' ? s : undefined;
    }, 30_000, 'a valid certificate').catch(async (err: Error) => {
      throw new Error(`${err.message}; status ${JSON.stringify(await acmeStatus(meshd.adminPort))}\n${pebble.output().slice(-2000)}`);
    });

    first = await served(httpsPort, 'a.test', root);
    assert.equal(first.status, 200);
    assert.equal(first.body, 'web');
    assert.deepEqual(first.leaf.subjectAltName, 'DNS:a.test');
    assert.equal(first.chain.length, 3, 'leaf, intermediate, and pebble\'s root as the anchor');
    assert.equal(first.chain[2]!.fingerprint256, new X509Certificate(root).fingerprint256);
    assert.equal(valid.notAfter, new Date(first.leaf.validTo).toISOString());
    assert.ok(valid.renewAt && valid.nextAttempt && valid.lastError === undefined, JSON.stringify(valid));

    assert.equal(await metric(meshd.adminPort, 'meshd_acme_orders_total', 'result="issued"'), 1);
    assert.equal(await metric(meshd.adminPort, 'meshd_acme_orders_total', 'result="failed"'), 0);
    assert.ok(!seen.some((u) => u.startsWith('/.well-known/acme-challenge/')), 'meshd answered the token, not the route');
    assert.equal((await get(httpPort, '/.well-known/acme-challenge/unknown-token')).body, 'web', 'an unknown token goes to the route');

    // The key stays in meshd and its storage.
    const key = fs.readFileSync(path.join(storage, 'certificates', 'a.test.key'), 'utf8');
    const keyBody = key.split('\n')[1]!;
    for (const text of [lines.join(''), (await get(meshd.adminPort, '/api/routes')).body, (await get(meshd.adminPort, '/metrics')).body]) {
      assert.doesNotMatch(text, /PRIVATE KEY/);
      assert.ok(!text.includes(keyBody));
    }
  });

  it('a restart on the same storage serves the stored certificate without a new order', async () => {
    await m!.stop();
    m = undefined;
    const meshd = await start();
    const valid = await waitFor(async () => {
      const s = await acmeStatus(meshd.adminPort);
      return s.state === 'valid' ? s : undefined;
    }, 5000, 'the stored certificate');
    const again = await served(httpsPort, 'a.test', root);
    assert.equal(again.leaf.fingerprint256, first.leaf.fingerprint256);
    assert.equal(again.body, 'web');
    assert.equal(valid.notAfter, new Date(first.leaf.validTo).toISOString());
    assert.equal(await metric(meshd.adminPort, 'meshd_acme_orders_total', 'result="issued"'), 0);
  });

  it('renews the 60 s certificate at two thirds of its life and serves the new one', async () => {
    const from = Date.parse(first.leaf.validFrom);
    const renewAt = from + Math.floor((Date.parse(first.leaf.validTo) - from) * 2 / 3);
    const renewed = await waitFor(async () => {
      const s = await served(httpsPort, 'a.test', root);
      return s.leaf.fingerprint256 !== first.leaf.fingerprint256 ? s : undefined;
    }, Math.max(0, renewAt - Date.now()) + 25_000, 'a renewed certificate served');
    assert.ok(Date.now() >= renewAt - 1000, 'not before the renewal point');
    assert.ok(Date.parse(renewed.leaf.validTo) > Date.parse(first.leaf.validTo));
    assert.equal(renewed.body, 'web');
    assert.equal(await metric(m!.adminPort, 'meshd_acme_orders_total', 'result="issued"'), 1);
    assert.equal((await acmeStatus(m!.adminPort)).notAfter, new Date(renewed.leaf.validTo).toISOString());
  });
});
