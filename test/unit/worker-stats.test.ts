// Worker counters reach the primary as increments, in slices: whatever the
// slicing and however often reports are taken, the primary's sums equal what
// the workers counted; a worker that exits leaves its counts and takes its
// in-flight work and connections with it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ProxyStats } from '../../src/proxy/context.js';
import type { RouteSpec } from '../../src/table/spec.js';
import { Table } from '../../src/table/table.js';
import { routeKey } from '../../src/table/spec.js';
import { StatsReporter, WorkerShare, type StatsReport } from '../../src/workers/stats.js';

const health = { interval: 2000, timeout: 1000, rise: 2, fall: 3 };

function specs(routes: number, backends: number): RouteSpec[] {
  return Array.from({ length: routes }, (_, r) => ({
    name: `app${r}`, mode: r % 5 === 4 ? 'tcp' as const : 'http' as const, port: r % 5 === 4 ? 9000 + r : 80, hosts: r % 5 === 4 ? [] : [`app${r}.test`], health, proxyProtocol: false, problems: [],
    backends: Array.from({ length: backends }, (_, i) => ({ id: `t${r}-${i}`, host: `10.0.${r}.${i + 1}`, port: 8080, node: 'n1', draining: false })),
  }));
}

function table(routes: number, backends: number): Table {
  const t = new Table({ drainTimeout: 1000 });
  t.apply({ routes: specs(routes, backends), notices: [] });
  return t;
}

/** Takes one report, slices added into `into` as they come. */
async function deliver(reporter: StatsReporter, worker: Table, wstats: ProxyStats, share: WorkerShare, into: Table, stats: ProxyStats): Promise<StatsReport[]> {
  const slices: StatsReport[] = [];
  await reporter.report(worker, wstats, (s, last) => {
    // Through a structured clone, as over the IPC channel.
    const copy = structuredClone(s);
    slices.push(copy);
    share.add(into, stats, copy, last);
  }, () => new Promise((r) => setImmediate(r)));
  return slices;
}

/** A deterministic pseudo-random sequence. */
function rng(seed: number): () => number {
  let x = seed;
  return () => ((x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
}

describe('worker counters as increments', () => {
  it('sums two workers exactly over many reports, in slices', async () => {
    const primary = table(1500, 4);
    const stats = new ProxyStats();
    const workers = [0, 1].map(() => ({ t: table(1500, 4), stats: new ProxyStats(), reporter: new StatsReporter(), share: new WorkerShare() }));
    const rand = rng(7);
    const expected = new Map<string, number>();
    let sliceCounts = 0;
    for (let round = 0; round < 6; round++) {
      for (const w of workers) {
        for (let i = 0; i < 400; i++) {
          const routes = [...w.t.routes.values()];
          const r = routes[Math.floor(rand() * routes.length)]!;
          const bs = [...r.backends.values()];
          const b = bs[Math.floor(rand() * bs.length)]!;
          b.requests++;
          if (rand() < 0.1) b.errors.set('UPSTREAM_RESET', (b.errors.get('UPSTREAM_RESET') ?? 0) + 1);
          if (r.spec.mode !== 'tcp') r.latency.total.observe(rand() / 10);
          const k = `${routeKey(r.spec)}|${b.key}`;
          expected.set(k, (expected.get(k) ?? 0) + 1);
        }
        w.stats.count('NO_ROUTE');
        w.stats.retries += 2;
        w.stats.connections = 10 + round;
        // Some rounds report nothing new for one worker.
        if (round % 3 !== 2) sliceCounts = Math.max(sliceCounts, (await deliver(w.reporter, w.t, w.stats, w.share, primary, stats)).length);
      }
    }
    for (const w of workers) await deliver(w.reporter, w.t, w.stats, w.share, primary, stats);
    assert.ok(sliceCounts > 1, 'a report of 1,500 routes comes in more than one slice');
    for (const r of primary.routes.values()) {
      for (const b of r.backends.values()) assert.equal(b.requests, expected.get(`${routeKey(r.spec)}|${b.key}`) ?? 0, `${routeKey(r.spec)} ${b.key}`);
      if (r.spec.mode === 'tcp') continue;
      const count = workers.reduce((n, w) => n + w.t.routes.get(routeKey(r.spec))!.latency.total.count, 0);
      assert.equal(r.latency.total.count, count);
      assert.equal(r.latency.total.counts.reduce((a, b) => a + b, 0), count);
    }
    const errors = (t: Table) => [...t.routes.values()].flatMap((r) => [...r.backends.values()]).reduce((n, b) => n + (b.errors.get('UPSTREAM_RESET') ?? 0), 0);
    assert.equal(errors(primary), errors(workers[0]!.t) + errors(workers[1]!.t));
    assert.equal(stats.answered.get('NO_ROUTE'), 12);
    assert.equal(stats.retries, 24);
    assert.equal(stats.connections, 30);
    assert.equal(workers[0]!.share.requests + workers[1]!.share.requests, [...expected.values()].reduce((a, b) => a + b, 0));
  });

  it('names each backend once when it is new, then only what moved', async () => {
    const w = table(50, 3);
    const reporter = new StatsReporter();
    const share = new WorkerShare();
    const primary = table(50, 3);
    const stats = new ProxyStats();
    const first = await deliver(reporter, w, new ProxyStats(), share, primary, stats);
    assert.equal(first.flatMap((s) => s.routes).flatMap((r) => r.backends).length, 150);
    const quiet = await deliver(reporter, w, new ProxyStats(), share, primary, stats);
    assert.deepEqual(quiet.flatMap((s) => s.routes), []);
    [...w.routes.values()][3]!.backends.values().next().value!.requests = 5;
    const moved = await deliver(reporter, w, new ProxyStats(), share, primary, stats);
    assert.deepEqual(moved.flatMap((s) => s.routes).map((r) => [r.key, r.backends.length]), [[routeKey([...w.routes.values()][3]!.spec), 1]]);
  });

  it('an exited worker keeps its counts and gives back its in-flight work and connections', async () => {
    const primary = table(3, 2);
    const stats = new ProxyStats();
    const w = table(3, 2);
    const wstats = new ProxyStats();
    const reporter = new StatsReporter();
    const share = new WorkerShare();
    const b = [...w.routes.values()][1]!.backends.values().next().value!;
    b.requests = 7;
    b.active = 3;
    wstats.connections = 4;
    await deliver(reporter, w, wstats, share, primary, stats);
    const pb = primary.routes.get(routeKey(b.route.spec))!.backends.get(b.key)!;
    assert.equal(pb.active, 3);
    assert.equal(share.inFlight, 3);
    assert.equal(stats.connections, 4);
    b.active = 1;
    await deliver(reporter, w, wstats, share, primary, stats);
    assert.equal(pb.active, 1);
    share.release(stats);
    assert.equal(pb.active, 0);
    assert.equal(pb.requests, 7);
    assert.equal(stats.connections, 0);
    assert.equal(share.requests, 7);
  });

  it('a backend that leaves the table and comes back under its key leaves no in-flight work behind', async () => {
    const spec = specs(1, 2);
    const without = [{ ...spec[0]!, backends: spec[0]!.backends.slice(1) }];
    const primary = table(1, 2);
    const stats = new ProxyStats();
    const w = table(1, 2);
    const wstats = new ProxyStats();
    const reporter = new StatsReporter();
    const share = new WorkerShare();
    const key = [...w.routes.values()][0]!.backends.values().next().value!.key;
    const active = (t: Table) => [...t.routes.values()][0]!.backends.get(key)?.active;
    [...w.routes.values()][0]!.backends.get(key)!.active = 3;
    await deliver(reporter, w, wstats, share, primary, stats);
    assert.equal(active(primary), 3);
    // The task goes on both sides; the worker's requests finish meanwhile.
    const gone = [...w.routes.values()][0]!.backends.get(key)!;
    for (const t of [primary, w]) t.apply({ routes: without, notices: [] });
    gone.active = 0;
    await deliver(reporter, w, wstats, share, primary, stats);
    // It comes back with the same address: nothing is in flight anywhere.
    for (const t of [primary, w]) t.apply({ routes: spec, notices: [] });
    await deliver(reporter, w, wstats, share, primary, stats);
    assert.equal(active(primary), 0);
    // Work in flight is reported as it is now, whichever object the worker counts it on.
    [...w.routes.values()][0]!.backends.get(key)!.active = 2;
    await deliver(reporter, w, wstats, share, primary, stats);
    assert.equal(active(primary), 2);
    share.release(stats);
    assert.equal(active(primary), 0);
  });
});
