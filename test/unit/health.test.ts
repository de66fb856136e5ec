import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { describe, it } from 'node:test';
import { Agent } from 'undici';
import { silentLogger } from '../../src/core/log.js';
import { RESETS_TO_EJECT, reportFailure, reportSuccess } from '../../src/health/outlier.js';
import { probeHttp, probeTcp, recordProbe } from '../../src/health/prober.js';
import { Table, type Backend } from '../../src/table/table.js';

function oneBackend(): Backend {
  const t = new Table({ drainTimeout: 1000 });
  t.apply({ routes: [{ name: 'web', mode: 'tcp', port: 80, hosts: [], health: { interval: 1000, timeout: 500, rise: 2, fall: 3 }, backends: [{ id: 't1', host: '127.0.0.1', port: 1, draining: false }], proxyProtocol: false, problems: [] }], notices: [] });
  const b = [...t.allBackends()][0]!;
  recordProbe(b, { ok: true }, 2, 3);
  return b;
}
const ok = { ok: true } as const;
const fail = { ok: false, error: 'ECONNREFUSED' } as const;

describe('health state', () => {
  it('takes a new backend in after its first pass; one that failed first needs `rise` passes', () => {
    const t = new Table({ drainTimeout: 1000 });
    const spec = (id: string, port: number) => ({ id, host: '127.0.0.1', port, draining: false });
    t.apply({ routes: [{ name: 'web', mode: 'tcp', port: 80, hosts: [], health: { interval: 1000, timeout: 500, rise: 2, fall: 3 }, backends: [spec('t1', 1), spec('t2', 2)], proxyProtocol: false, problems: [] }], notices: [] });
    const [b1, b2] = [...t.allBackends()];
    assert.equal(b1!.eligible, false);
    assert.equal(b1!.settling, true, 'a new backend is probed at the fast interval');
    recordProbe(b1!, ok, 2, 3);
    assert.equal(b1!.eligible, true);
    assert.equal(b1!.settling, false);
    for (let i = 0; i < 3; i++) recordProbe(b2!, fail, 2, 3);
    assert.equal(b2!.activeDown, true);
    assert.equal(b2!.settling, false, 'a backend that is down waits the normal interval');
    recordProbe(b2!, ok, 2, 3);
    assert.equal(b2!.eligible, false);
    assert.equal(b2!.settling, true, 'part way to rise');
    recordProbe(b2!, ok, 2, 3);
    assert.equal(b2!.eligible, true);
  });

  it('goes down after `fall` failures in a row and up after `rise` passes in a row', () => {
    const b = oneBackend();
    recordProbe(b, fail, 2, 3);
    recordProbe(b, fail, 2, 3);
    assert.equal(b.eligible, true, 'two failures are not yet three');
    recordProbe(b, ok, 2, 3);
    recordProbe(b, fail, 2, 3);
    recordProbe(b, fail, 2, 3);
    assert.equal(b.eligible, true, 'a pass resets the failure streak');
    recordProbe(b, fail, 2, 3);
    assert.equal(b.activeDown, true);
    assert.equal(b.lastProbeError, 'ECONNREFUSED');
    recordProbe(b, ok, 2, 3);
    assert.equal(b.eligible, false, 'one pass is not yet two');
    recordProbe(b, ok, 2, 3);
    assert.equal(b.eligible, true);
  });

  it('ejects at once on a refused connect, after several resets, and returns only after probes pass', () => {
    const b = oneBackend();
    const log = silentLogger();
    reportFailure(b, Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }), log);
    assert.equal(b.ejected, true);
    assert.equal(b.errors.get('ECONNREFUSED'), 1);
    recordProbe(b, ok, 2, 3);
    assert.equal(b.ejected, true);
    recordProbe(b, ok, 2, 3);
    assert.equal(b.ejected, false);

    const reset = Object.assign(new Error('reset'), { code: 'ECONNRESET' });
    for (let i = 1; i < RESETS_TO_EJECT; i++) reportFailure(b, reset, log);
    assert.equal(b.ejected, false);
    reportSuccess(b);
    for (let i = 1; i < RESETS_TO_EJECT; i++) reportFailure(b, reset, log);
    assert.equal(b.ejected, false, 'a success in between resets the count');
    reportFailure(b, reset, log);
    assert.equal(b.ejected, true);
  });
});

describe('probes', () => {
  it('TCP: passes on a listening port, fails on a closed one', async () => {
    const server = net.createServer((s) => s.destroy());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    assert.deepEqual(await probeTcp('127.0.0.1', port, 500), { ok: true });
    await new Promise((r) => server.close(r));
    assert.deepEqual(await probeTcp('127.0.0.1', port, 500), { ok: false, error: 'ECONNREFUSED' });
  });

  it('HTTP: 2xx passes; 5xx and a hang fail', async () => {
    let mode: 'ok' | 'error' | 'hang' = 'ok';
    const server = http.createServer((req, res) => {
      assert.equal(req.url, '/healthz');
      if (mode === 'hang') return;
      res.statusCode = mode === 'ok' ? 200 : 503;
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const agent = new Agent();
    assert.deepEqual(await probeHttp(agent, '127.0.0.1', port, '/healthz', 500), { ok: true });
    mode = 'error';
    assert.deepEqual(await probeHttp(agent, '127.0.0.1', port, '/healthz', 500), { ok: false, error: 'status 503' });
    mode = 'hang';
    const r = await probeHttp(agent, '127.0.0.1', port, '/healthz', 200);
    assert.equal(r.ok, false);
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await agent.close();
  });
});
