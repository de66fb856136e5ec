// Cost of a pick under each balancing policy, as the proxy does it per request
// (pick, then acquire and release the backend), at 3, 100 and 1,000 backends,
// in ns of this process's CPU time; and of a sticky pick (cookie → backend).
//   npm run build && node dist/bench/balance.js
import type { Balance, BackendSpec } from '../src/table/spec.js';
import { Table, type Route } from '../src/table/table.js';

const N = 2_000_000;
const health = { interval: 1000, timeout: 500, rise: 2, fall: 3 };

function route(n: number, lb: Balance, sticky: boolean): Route {
  const t = new Table({ drainTimeout: 1000 });
  const backends: BackendSpec[] = Array.from({ length: n }, (_, i) => ({ id: `task-${i}-${'x'.repeat(20)}`, host: `10.0.${i >> 8}.${i & 255}`, port: 80, draining: false }));
  t.apply({ routes: [{ name: 'web', mode: 'http', port: 80, hosts: [], health, backends, proxyProtocol: false, problems: [], lb, ...(sticky ? { sticky: { cookie: 's' } } : {}) }], notices: [] });
  for (const b of t.allBackends()) b.setFlag('pending', false);
  return t.routes.get('80 web')!;
}

const ips = Array.from({ length: 4096 }, (_, i) => `10.1.${i >> 8}.${i & 255}`);

function round(r: Route, cookies: (string | undefined)[]): number {
  const start = process.cpuUsage();
  for (let i = 0; i < N; i++) {
    const b = r.pick(undefined, ips[i & 4095], cookies[i & 4095])!;
    b.acquire();
    b.release();
  }
  const used = process.cpuUsage(start);
  return ((used.user + used.system) * 1000) / N;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const none = ips.map(() => undefined);
const rows: string[] = ['| backends | round-robin | least-conn | p2c | source-hash | sticky (cookie hit) |', '|---:|---:|---:|---:|---:|---:|'];
for (const n of [3, 100, 1000]) {
  const cells: string[] = [];
  for (const lb of ['round-robin', 'least-conn', 'p2c', 'source-hash'] as Balance[]) {
    const r = route(n, lb, false);
    cells.push(`${median([round(r, none), round(r, none), round(r, none)]).toFixed(0)} ns`);
  }
  const s = route(n, 'round-robin', true);
  const ids = [...s.backends.values()].map((b) => b.stickyId);
  const cookies = ips.map((_, i) => ids[i % ids.length]);
  cells.push(`${median([round(s, cookies), round(s, cookies), round(s, cookies)]).toFixed(0)} ns`);
  rows.push(`| ${n} | ${cells.join(' | ')} |`);
}
console.log(`per pick + acquire + release, median of 3 rounds of ${N}:\n${rows.join('\n')}`);
