// Past --metrics-detail-max, /metrics sums backend counters per route. Those
// sums are Prometheus counters: a task replaced (its backend draining, then
// closed) must not make them fall, or every rolling update reads as a reset.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createMetrics } from '../../src/admin/metrics.js';
import { silentLogger } from '../../src/core/log.js';
import { ProxyStats } from '../../src/proxy/context.js';
import type { RouteSpec } from '../../src/table/spec.js';
import { Table } from '../../src/table/table.js';
import { CertStore } from '../../src/tls/store.js';

const health = { interval: 2000, timeout: 1000, rise: 2, fall: 3 };
const spec = (tasks: number[]): RouteSpec[] => [{
  name: 'web', mode: 'http', port: 80, hosts: [], health, proxyProtocol: false, problems: [],
  backends: tasks.map((t) => ({ id: `t${t}`, host: `10.0.0.${t}`, port: 8080, node: 'n1', draining: false })),
}];

async function scrape(metrics: ReturnType<typeof createMetrics>): Promise<Map<string, number>> {
  let text = '';
  for await (const chunk of metrics.chunks()) text += chunk;
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^(meshd_backend_(?:requests|errors)_total\{[^}]*\}) (\d+)$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

describe('summarised backend counters', () => {
  it('do not fall when a backend drains, closes, or a new one starts', async () => {
    const table = new Table({ drainTimeout: 60_000 });
    table.apply({ routes: spec([1, 2, 3]), notices: [] });
    const certs = new CertStore({ dir: '/nonexistent', log: silentLogger() });
    const metrics = createMetrics(table, new ProxyStats(), certs, undefined, () => table.version, { detailMax: 0 });
    const route = [...table.routes.values()][0]!;
    const [b1, b2] = [...route.backends.values()];
    for (const b of route.backends.values()) for (let i = 0; i < 5; i++) b.acquire(), b.release();
    b1!.countError('UPSTREAM_RESET');
    b2!.acquire();
    b2!.acquire();
    const requests = 'meshd_backend_requests_total{route="web",port="80"}';
    const errors = 'meshd_backend_errors_total{route="web",port="80",code="UPSTREAM_RESET"}';
    const first = await scrape(metrics);
    assert.equal(first.get(requests), 17);
    assert.equal(first.get(errors), 1);
    // Tasks 1 and 2 are replaced by 4: task 1 closes at once, task 2 drains its two requests.
    table.apply({ routes: spec([3, 4]), notices: [] });
    assert.equal(route.retiring.size, 1);
    const draining = await scrape(metrics);
    assert.equal(draining.get(requests), 17);
    assert.equal(draining.get(errors), 1);
    b2!.release();
    b2!.release();
    assert.equal(route.retiring.size, 0);
    route.backends.values().next().value!.acquire();
    const after = await scrape(metrics);
    assert.equal(after.get(requests), 18);
    assert.equal(after.get(errors), 1);
    table.close();
    certs.stop();
  });
});
