// Balancing policies and sticky picks on a live table: fairness, what ejection
// and drain do to each, and how many clients source-hash moves when the set changes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { murmur3 } from '../../src/table/balance.js';
import type { Balance, BackendSpec, RouteSpec } from '../../src/table/spec.js';
import { Table, type Backend, type Route } from '../../src/table/table.js';

const health = { interval: 1000, timeout: 500, rise: 2, fall: 3 };
const specs = (n: number, from = 1): BackendSpec[] => Array.from({ length: n }, (_, i) => ({ id: `task${i + from}`, host: `10.0.0.${i + from}`, port: 80, draining: false }));

function routeWith(lb: Balance | undefined, backends: BackendSpec[], extra: Partial<RouteSpec> = {}): { t: Table; r: Route; apply: (b: BackendSpec[]) => void } {
  const t = new Table({ drainTimeout: 60_000 });
  const apply = (b: BackendSpec[]) => {
    t.apply({ routes: [{ name: 'web', mode: 'http', port: 80, hosts: [], health, backends: b, proxyProtocol: false, problems: [], ...(lb ? { lb } : {}), ...extra }], notices: [] });
    for (const x of t.allBackends()) x.setFlag('pending', false);
  };
  apply(backends);
  return { t, r: t.routes.get('80 web')!, apply };
}

const ips = Array.from({ length: 10_000 }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);

function assignment(r: Route): Map<string, string> {
  return new Map(ips.map((ip) => [ip, r.pick(undefined, ip)!.id]));
}

describe('balancing policies', () => {
  it('least-conn picks the backend with fewest in flight, round-robin among ties, and follows releases', () => {
    const { r } = routeWith('least-conn', specs(3));
    const held: Backend[] = [];
    // Nothing released: each pick raises one count, so picks go around.
    for (let i = 0; i < 6; i++) {
      const b = r.pick()!;
      b.acquire();
      held.push(b);
    }
    assert.deepEqual(held.map((b) => b.id), ['task1', 'task2', 'task3', 'task1', 'task2', 'task3']);
    // task2 finishes both of its requests: it alone has fewest.
    held[1]!.release();
    held[4]!.release();
    for (let i = 0; i < 2; i++) {
      const b = r.pick()!;
      assert.equal(b.id, 'task2');
      b.acquire();
    }
    assert.deepEqual([...r.backends.values()].map((b) => b.active), [2, 2, 2]);
    // A tie again: the longest idle at that count goes first.
    const next = r.pick()!;
    assert.equal(next.id, 'task1');
  });

  it('least-conn leaves out ejected and draining backends, and brings one back with its count', () => {
    const { r, apply } = routeWith('least-conn', specs(3));
    const [b1, b2, b3] = [...r.backends.values()] as [Backend, Backend, Backend];
    b1.acquire();
    b1.acquire();
    b2.setFlag('ejected', true);
    assert.equal(r.pick()!.id, 'task3');
    b3.acquire();
    b3.acquire();
    b3.acquire();
    assert.equal(r.pick()!.id, 'task1', '2 in flight beats 3');
    b2.setFlag('ejected', false);
    assert.equal(r.pick()!.id, 'task2', 'back with none in flight');
    apply(specs(3).map((s) => (s.id === 'task2' ? { ...s, draining: true } : s)));
    assert.equal(r.pick()!.id, 'task1');
    assert.equal(r.pick(b1)!.id, 'task3', 'avoid: the next lowest');
  });

  it('p2c spreads evenly when requests finish at once, and away from a loaded backend', () => {
    const { r } = routeWith('p2c', specs(4));
    const counts = new Map<string, number>();
    for (let i = 0; i < 40_000; i++) {
      const b = r.pick()!;
      counts.set(b.id, (counts.get(b.id) ?? 0) + 1);
    }
    for (const n of counts.values()) assert.ok(n > 8_000 && n < 12_000, `share ${n} of 40000`);
    const loaded = [...r.backends.values()][0]!;
    for (let i = 0; i < 50; i++) loaded.acquire();
    let toLoaded = 0;
    for (let i = 0; i < 4_000; i++) if (r.pick() === loaded) toLoaded++;
    assert.equal(toLoaded, 0, 'two choices never both land on the only loaded backend, and it always loses');
    for (let i = 0; i < 100; i++) assert.notEqual(r.pick(loaded), loaded);
  });

  it('source-hash keeps each client on one backend and spreads clients evenly', () => {
    const { r } = routeWith('source-hash', specs(5));
    const first = assignment(r);
    assert.deepEqual(assignment(r), first, 'the same backend every time');
    const shares = new Map<string, number>();
    for (const id of first.values()) shares.set(id, (shares.get(id) ?? 0) + 1);
    assert.equal(shares.size, 5);
    for (const n of shares.values()) assert.ok(n > 1_300 && n < 2_700, `share ${n} of 10000`);
  });

  it('source-hash moves about 1/n of the clients when a backend joins, only the ejected one\'s when one leaves', () => {
    const { r, apply } = routeWith('source-hash', specs(4));
    const before = assignment(r);
    apply(specs(5));
    const after = assignment(r);
    const moved = ips.filter((ip) => before.get(ip) !== after.get(ip));
    assert.ok(moved.length > 1_000 && moved.length < 3_000, `${moved.length} of 10000 moved (1/5 is 2000)`);
    assert.ok(moved.every((ip) => after.get(ip) === 'task5'), 'every moved client went to the new backend');

    const gone = [...r.backends.values()].find((b) => b.id === 'task2')!;
    gone.setFlag('ejected', true);
    const without = assignment(r);
    for (const ip of ips) {
      if (after.get(ip) === 'task2') assert.notEqual(without.get(ip), 'task2');
      else assert.equal(without.get(ip), after.get(ip), `${ip} stays where it was`);
    }
    gone.setFlag('ejected', false);
    assert.deepEqual(assignment(r), after, 'and they come back');
  });

  it('source-hash builds the same ring on every node: the assignment depends on task IDs, not on order or process', () => {
    const a = routeWith('source-hash', specs(6)).r;
    const b = routeWith('source-hash', specs(6).reverse()).r;
    assert.deepEqual(assignment(a), assignment(b));
    const ip = '192.0.2.7';
    assert.notEqual(a.pick(a.pick(undefined, ip), ip), a.pick(undefined, ip), 'avoid: the next one clockwise');
  });

  it('murmur3 is MurmurHash3_x86_32 of the string\'s UTF-16LE bytes', () => {
    // The published vectors for the empty input, and values from an independent byte-wise implementation.
    assert.equal(murmur3(''), 0);
    assert.equal(murmur3('', 1), 0x514e28b7);
    assert.equal(murmur3('a'), 0x6f49d11a);
    assert.equal(murmur3('ab'), 0x165860ca);
    assert.equal(murmur3('10.0.0.1'), 0xbddddc52);
    assert.equal(murmur3('task1#7'), 0x5a1d084b);
  });
});

describe('sticky picks', () => {
  it('a cookie naming a backend picks it while it is eligible, and the policy otherwise', () => {
    const { r } = routeWith(undefined, specs(3), { sticky: { cookie: 'meshd_sticky' } });
    const b3 = [...r.backends.values()][2]!;
    for (let i = 0; i < 5; i++) assert.equal(r.pick(undefined, undefined, b3.stickyId), b3);
    b3.setFlag('ejected', true);
    for (let i = 0; i < 5; i++) assert.notEqual(r.pick(undefined, undefined, b3.stickyId), b3);
    b3.setFlag('ejected', false);
    assert.equal(r.pick(undefined, undefined, b3.stickyId), b3);
    assert.notEqual(r.pick(b3, undefined, b3.stickyId), b3, 'a retry leaves it');
    assert.ok(r.pick(undefined, undefined, 'not-a-backend'), 'an unknown cookie gets a backend');
  });

  it('the id in the cookie is the same for a task on every node and does not show its address', () => {
    const a = [...routeWith(undefined, specs(2), { sticky: { cookie: 'c' } }).r.backends.values()];
    const b = [...routeWith(undefined, specs(2).reverse(), { sticky: { cookie: 'c' } }).r.backends.values()];
    assert.equal(a.find((x) => x.id === 'task1')!.stickyId, b.find((x) => x.id === 'task1')!.stickyId);
    assert.notEqual(a[0]!.stickyId, a[1]!.stickyId);
    for (const x of a) assert.ok(!x.stickyId.includes(x.host) && !x.stickyId.includes(x.id) && /^[A-Za-z0-9_-]{16}$/.test(x.stickyId));
  });
});
