// The dashboard's view of the table: one state per backend from its health
// flags, and rates from counter deltas over the sampling window.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildView, RateWindow, VIEW_MAX_BACKENDS } from '../../src/admin/live-view.js';
import type { Listeners } from '../../src/proxy/listeners.js';
import type { BackendSpec } from '../../src/table/spec.js';
import { Table } from '../../src/table/table.js';

const health = { interval: 1000, timeout: 500, rise: 2, fall: 3 };
const backend = (n: number, extra: Partial<BackendSpec> = {}): BackendSpec => ({ id: `t${n}`, host: `10.0.0.${n}`, port: 80, draining: false, ...extra });

function setup(backends: BackendSpec[]) {
  const table = new Table({ drainTimeout: 1000 });
  table.apply({ routes: [{ name: 'web', mode: 'http', port: 80, hosts: [], health: { ...health, path: '/health' }, backends, proxyProtocol: false, problems: [] }], notices: [] });
  const listeners = { ports: [80], failures: new Map() } as unknown as Listeners;
  const rates = new RateWindow(5000);
  const view = () => buildView({ table, version: table.version, listeners, rates, discoveryError: () => undefined, instance: undefined, auth: false });
  const b = (n: number) => [...table.allBackends()].find((x) => x.id === `t${n}`)!;
  return { table, rates, view, b };
}

describe('dashboard view', () => {
  it('names one state per backend from its health flags', () => {
    const { view, b } = setup([1, 2, 3, 4, 5, 6].map((n) => backend(n, { draining: n === 6 })));
    b(1).setFlag('pending', false);
    b(2).lastProbeError = 'connect ECONNREFUSED';
    b(3).setFlag('pending', false);
    b(3).setFlag('activeDown', true);
    b(4).setFlag('pending', false);
    b(4).setFlag('ejected', true);
    b(5).setFlag('failed', true);
    const states = Object.fromEntries(view().routes[0]!.backends.map((x) => [x.id, [x.state, x.probe]]));
    assert.deepEqual(states, {
      t1: ['active', 'up'],
      t2: ['pending', 'pending'], // failed its first probe, not yet `fall` times
      t3: ['out', 'down'],
      t4: ['out', 'up'],
      t5: ['out', 'pending'],
      t6: ['draining', 'pending'],
    });
    assert.equal(view().routes[0]!.eligible, 1);
    assert.equal(view().routes[0]!.check, 'GET /health');
  });

  it('computes rates from counter deltas over the window, per backend and per route', () => {
    const { table, rates, view, b } = setup([backend(1), backend(2)]);
    rates.sample(table, 0);
    assert.equal(view().routes[0]!.rate, null, 'one sample: no rate yet');
    b(1).requests += 10;
    b(2).requests += 4;
    b(2).failures += 1;
    rates.sample(table, 1000);
    let web = view().routes[0]!;
    assert.deepEqual(web.backends.map((x) => [x.rate, x.errorRate]), [[10, 0], [4, 1]]);
    assert.equal(web.rate, 14);
    assert.equal(web.errorRate, 1);

    // Over the whole window once it can: 30 more requests in 4 s after the first second.
    for (let t = 2000; t <= 5000; t += 1000) {
      b(1).requests += 10;
      rates.sample(table, t);
    }
    assert.equal(view().routes[0]!.backends[0]!.rate, 10);
    // Idle after that: the rate falls as the busy seconds leave the window, and stays at 0.
    rates.sample(table, 6000);
    assert.equal(view().routes[0]!.backends[0]!.rate, 8);
    for (let t = 7000; t <= 12000; t += 1000) rates.sample(table, t);
    web = view().routes[0]!;
    assert.equal(web.backends[0]!.rate, 0);
    assert.equal(web.rate, 0);
  });

  it('gives a backend that joined since the last sample no rate until it has two', () => {
    const { table, rates, view } = setup([backend(1)]);
    rates.sample(table, 0);
    table.apply({ routes: [{ name: 'web', mode: 'http', port: 80, hosts: [], health, backends: [backend(1), backend(2)], proxyProtocol: false, problems: [] }], notices: [] });
    rates.sample(table, 1000);
    assert.deepEqual(view().routes[0]!.backends.map((x) => x.rate), [0, null]);
    rates.clear();
    assert.deepEqual(view().routes[0]!.backends.map((x) => x.rate), [null, null], 'cleared when nobody watches');
  });

  it('summarises a large table: routes that need attention first, at most VIEW_MAX_BACKENDS backends, totals over all', () => {
    const table = new Table({ drainTimeout: 1000 });
    const routes = Array.from({ length: 300 }, (_, r) => ({
      name: `svc${String(r).padStart(3, '0')}`, mode: 'http' as const, port: 80, hosts: [`svc${r}.test`], health, proxyProtocol: false,
      problems: r === 7 ? ['meshd.lb: "x" is not one of round-robin, least-conn, p2c, source-hash; round-robin is used'] : [],
      backends: Array.from({ length: 10 }, (_, i) => ({ id: `r${r}t${i}`, host: `10.0.${r}.${i}`, port: 80, draining: false })),
    }));
    table.apply({ routes, notices: Array.from({ length: 250 }, (_, i) => ({ service: `n${i}`, message: 'not served' })) });
    for (const b of table.allBackends()) b.setFlag('pending', false);
    [...table.routes.get('80 svc250')!.backends.values()][3]!.setFlag('ejected', true);
    const listeners = { ports: [80], failures: new Map() } as unknown as Listeners;
    const v = buildView({ table, version: table.version, listeners, rates: new RateWindow(5000), discoveryError: () => undefined, instance: undefined, auth: false });
    const shown = v.routes.map((r) => r.name);
    assert.ok(shown.includes('svc250') && shown.includes('svc007'), 'the degraded route and the one with a problem are shown');
    assert.equal(v.routes.reduce((n, r) => n + r.backends.length, 0), VIEW_MAX_BACKENDS);
    assert.deepEqual(shown, [...shown].sort(), 'in port and name order');
    assert.deepEqual(v.totals, { routes: 300, backends: 3000, activeBackends: 2999, routesDown: 0, hiddenRoutes: 300 - shown.length, hiddenNotices: 50 });
    assert.equal(v.notices.length, 200);
  });
});
