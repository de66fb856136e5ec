import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BackendSpec, RouteSpec, RoutingTable } from '../../src/table/spec.js';
import { routeOf, strippedTarget, Table } from '../../src/table/table.js';

const health = { interval: 1000, timeout: 500, rise: 2, fall: 3 };
function backend(id: string, extra: Partial<BackendSpec> = {}): BackendSpec {
  return { id, host: `10.0.0.${id.replace(/\D/g, '') || 1}`, port: 80, draining: false, ...extra };
}
function route(name: string, port: number, backends: BackendSpec[], extra: Partial<RouteSpec> = {}): RouteSpec {
  return { name, mode: 'tcp', port, hosts: [], health, backends, proxyProtocol: false, problems: [], ...extra };
}
const rt = (...routes: RouteSpec[]): RoutingTable => ({ routes, notices: [] });
/** Applies a table and lets every new backend pass its first probe, as the prober would. */
function apply(t: Table, next: RoutingTable): boolean {
  const changed = t.apply(next);
  for (const b of t.allBackends()) b.setFlag('pending', false);
  return changed;
}

describe('Table', () => {
  it('gives no work to a new backend until it has passed a probe', () => {
    const t = new Table({ drainTimeout: 1000 });
    t.apply(rt(route('web', 80, [backend('t1')])));
    const r = t.ports.get(80)!.default!;
    assert.equal(r.pick(), undefined);
    const [b1] = [...r.backends.values()];
    b1!.setFlag('pending', false);
    assert.equal(r.pick(), b1);
    t.apply(rt(route('web', 80, [backend('t1'), backend('t2')])));
    assert.deepEqual([r.pick()!.id, r.pick()!.id], ['t1', 't1'], 't1 stays proven; t2 waits');
  });

  it('picks round-robin, each backend equally often', () => {
    const t = new Table({ drainTimeout: 1000 });
    apply(t, rt(route('web', 80, [backend('t1'), backend('t2'), backend('t3')])));
    const r = t.ports.get(80)!.default!;
    const counts = new Map<string, number>();
    const order: string[] = [];
    for (let i = 0; i < 3000; i++) {
      const b = r.pick()!;
      counts.set(b.id, (counts.get(b.id) ?? 0) + 1);
      if (i < 6) order.push(b.id);
    }
    assert.deepEqual([...counts.values()], [1000, 1000, 1000]);
    assert.deepEqual(order, ['t1', 't2', 't3', 't1', 't2', 't3']);
  });

  it('skips backends that any health source has taken out, and returns undefined when none is left', () => {
    const t = new Table({ drainTimeout: 1000 });
    apply(t, rt(route('web', 80, [backend('t1'), backend('t2'), backend('t3', { draining: true })])));
    const r = t.ports.get(80)!.default!;
    const [b1, b2] = [...r.backends.values()];
    b1!.setFlag('activeDown', true);
    assert.deepEqual([r.pick()!.id, r.pick()!.id], ['t2', 't2']);
    b2!.setFlag('ejected', true);
    assert.equal(r.pick(), undefined);
    b1!.setFlag('activeDown', false);
    assert.equal(r.pick()!.id, 't1');
  });

  it('pick(avoid) gives another backend when there is one', () => {
    const t = new Table({ drainTimeout: 1000 });
    apply(t, rt(route('web', 80, [backend('t1'), backend('t2')])));
    const r = t.ports.get(80)!.default!;
    for (let i = 0; i < 10; i++) {
      const first = r.pick()!;
      assert.notEqual(r.pick(first), first);
    }
    apply(t, rt(route('web', 80, [backend('t1')])));
    const only = r.pick()!;
    assert.equal(r.pick(only), undefined);
  });

  it('keeps health state and counters of backends that stay; a new table version only on change', () => {
    const t = new Table({ drainTimeout: 1000 });
    assert.equal(apply(t, rt(route('web', 80, [backend('t1'), backend('t2')]))), true);
    const b1 = t.routes.get('80 web')!.backends.get('t1@10.0.0.1:80')!;
    b1.requests = 42;
    b1.setFlag('ejected', true);
    assert.equal(apply(t, rt(route('web', 80, [backend('t1'), backend('t2')]))), false);
    assert.equal(t.version, 1);
    assert.equal(apply(t, rt(route('web', 80, [backend('t1'), backend('t3')]))), true);
    const again = t.routes.get('80 web')!.backends.get('t1@10.0.0.1:80')!;
    assert.equal(again, b1);
    assert.equal(again.requests, 42);
    assert.equal(again.ejected, true);
    assert.deepEqual([...t.routes.get('80 web')!.backends.values()].map((b) => b.id), ['t1', 't3']);
  });

  it('drains removed backends: no new picks, closed once in-flight work is done', () => {
    const t = new Table({ drainTimeout: 60_000 });
    apply(t, rt(route('web', 80, [backend('t1'), backend('t2')])));
    const r = t.ports.get(80)!.default!;
    const b2 = r.backends.get('t2@10.0.0.2:80')!;
    let closed = 0;
    b2.resources.add({ close: () => closed++, destroy: () => closed++ });
    b2.active = 1;
    apply(t, rt(route('web', 80, [backend('t1')])));
    assert.equal(b2.removed, true);
    for (let i = 0; i < 4; i++) assert.equal(r.pick()!.id, 't1');
    assert.equal(closed, 0, 'in-flight work keeps it open');
    b2.release();
    assert.equal(closed, 1);
  });

  it('force-closes a draining backend after the drain timeout', async () => {
    const t = new Table({ drainTimeout: 30 });
    apply(t, rt(route('web', 80, [backend('t1')])));
    const b = t.routes.get('80 web')!.backends.get('t1@10.0.0.1:80')!;
    const calls: string[] = [];
    b.resources.add({ close: () => calls.push('close'), destroy: () => calls.push('destroy') });
    b.active = 1;
    apply(t, rt());
    await new Promise((r) => setTimeout(r, 80));
    assert.deepEqual(calls, ['destroy']);
    assert.equal(t.ports.size, 0);
  });

  it('revives a draining backend that comes back: same object, connections kept, no drain deadline', async () => {
    const t = new Table({ drainTimeout: 30 });
    apply(t, rt(route('web', 80, [backend('t1'), backend('t2')])));
    const b2 = t.routes.get('80 web')!.backends.get('t2@10.0.0.2:80')!;
    const calls: string[] = [];
    b2.resources.add({ close: () => calls.push('close'), destroy: () => calls.push('destroy') });
    b2.active = 1;
    apply(t, rt(route('web', 80, [backend('t1')])));
    assert.equal(b2.removed, true);
    apply(t, rt(route('web', 80, [backend('t1'), backend('t2')])));
    assert.equal(t.routes.get('80 web')!.backends.get('t2@10.0.0.2:80'), b2, 'the same backend, not a new one');
    assert.equal(b2.removed, false);
    await new Promise((r) => setTimeout(r, 80));
    assert.deepEqual(calls, [], 'its connection outlives the old drain deadline');
    b2.release();
    assert.deepEqual(calls, [], 'and a finished request does not close it');
    // Gone for good once it has closed: the next return is a fresh backend.
    apply(t, rt(route('web', 80, [backend('t1')])));
    apply(t, rt(route('web', 80, [backend('t1'), backend('t2')])));
    assert.notEqual(t.routes.get('80 web')!.backends.get('t2@10.0.0.2:80'), b2);
  });

  it('routes L7 ports by host with a default', () => {
    const t = new Table({ drainTimeout: 1000 });
    apply(t, rt(
      route('counter', 80, [backend('t1')], { mode: 'http', hosts: ['counter.local.dev'] }),
      route('web', 80, [backend('t2')], { mode: 'http' }),
    ));
    const entry = t.ports.get(80)!;
    assert.equal(entry.mode, 'http');
    assert.equal(entry.byHost.get('counter.local.dev')!.fallback!.spec.name, 'counter');
    assert.equal(entry.default!.spec.name, 'web');
  });

  it('routes L7 requests by host, then by the longest path prefix in whole segments; routes for any host take what a host leaves', () => {
    const t = new Table({ drainTimeout: 1000 });
    apply(t, rt(
      route('site', 80, [backend('t1')], { mode: 'http', hosts: ['a.test'] }),
      route('api', 80, [backend('t2')], { mode: 'http', hosts: ['a.test'], paths: ['/api'] }),
      route('users', 80, [backend('t3')], { mode: 'http', hosts: ['a.test'], paths: ['/api/users', '/u'] }),
      route('assets', 80, [backend('t4')], { mode: 'http', paths: ['/static'] }),
      route('root', 80, [backend('t5')], { mode: 'http', hosts: ['b.test'], paths: ['/'] }),
    ));
    const entry = t.ports.get(80)!;
    const name = (host: string | undefined, target: string) => routeOf(entry, host, target)?.spec.name;
    const cases: [string | undefined, string, string | undefined][] = [
      ['a.test', '/', 'site'], ['a.test', '/index.html', 'site'], ['a.test', '/api', 'api'], ['a.test', '/api/', 'api'],
      ['a.test', '/api/orders?id=1', 'api'], ['a.test', '/api?x=/api/users', 'api'], ['a.test', '/apiary', 'site'],
      ['a.test', '/api/users', 'users'], ['a.test', '/api/users/7', 'users'], ['a.test', '/api/usersx', 'api'], ['a.test', '/u/1', 'users'],
      ['a.test', '/static/app.js', 'site'], ['a.test', 'http://a.test/api/users', 'users'], ['a.test', '*', 'site'],
      ['b.test', '/anything', 'root'], ['c.test', '/static/x', 'assets'], ['c.test', '/', undefined], [undefined, '/static', 'assets'], [undefined, '/api', undefined],
    ];
    assert.deepEqual(cases.map(([h, p]) => name(h, p)), cases.map((c) => c[2]), 'each case: host, target → route');
  });

  it('strips the longest matched prefix for strip-prefix routes and nothing for others', () => {
    const t = new Table({ drainTimeout: 1000 });
    apply(t, rt(
      route('api', 80, [backend('t1')], { mode: 'http', paths: ['/api', '/api/v2'], stripPrefix: true }),
      route('keep', 80, [backend('t2')], { mode: 'http', hosts: ['k.test'], paths: ['/keep'] }),
    ));
    const api = t.routes.get('80 api')!;
    assert.deepEqual(strippedTarget(api, '/api/users?id=1'), ['/users?id=1', '/api']);
    assert.deepEqual(strippedTarget(api, '/api'), ['/', '/api']);
    assert.deepEqual(strippedTarget(api, '/api?q=1'), ['/?q=1', '/api']);
    assert.deepEqual(strippedTarget(api, '/api/v2/x'), ['/x', '/api/v2']);
    assert.deepEqual(strippedTarget(api, 'http://h.test/api/x'), ['/x', '/api']);
    assert.equal(strippedTarget(t.routes.get('80 keep')!, '/keep/x'), undefined);
  });
});
