// /metrics at swarm scale, in process: a table of 10,000 http routes of 10
// backends each (every route on port 80 with a host of its own, latency and
// request counts recorded), served by meshd's admin API and scraped by curl
// in a process of its own. Reported per scrape: its size, its total time and
// the longest the event loop was held meanwhile (a 1 ms timer's worst lag),
// against the same probe with no scrape running. Then what gathering the
// counters costs first with workers: each worker's report of its increments
// (serialised for IPC), and the primary adding two of them.
// Run with `npm run build && node dist/bench/metrics.js [--detail-max N]`.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import v8 from 'node:v8';
import { createMetrics } from '../src/admin/metrics.js';
import { startAdmin } from '../src/admin/server.js';
import { silentLogger } from '../src/core/log.js';
import { ProxyStats } from '../src/proxy/context.js';
import type { RouteSpec } from '../src/table/spec.js';
import { Table } from '../src/table/table.js';
import { CertStore } from '../src/tls/store.js';
import { StatsReporter, WorkerShare, type StatsReport } from '../src/workers/stats.js';

const ROUTES = 10_000;
const BACKENDS = 10;
const SCRAPES = 5;
const health = { interval: 2000, timeout: 1000, rise: 2, fall: 3 };

const flag = process.argv.indexOf('--detail-max');
const detailMax = flag > 0 ? Number(process.argv[flag + 1]) : undefined;

const table = new Table({ drainTimeout: 1000 });
const routes: RouteSpec[] = [];
for (let r = 0; r < ROUTES; r++) {
  const backends = Array.from({ length: BACKENDS }, (_, i) => {
    const n = r * BACKENDS + i;
    return { id: `task${n}`, host: `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`, port: 8080, node: `node${n % 100}`, draining: false };
  });
  routes.push({ name: `app${r}`, mode: 'http', port: 80, hosts: [`app${r}.example.com`], health, backends, proxyProtocol: false, problems: [] });
}
table.apply({ routes, notices: [] });
for (const r of table.routes.values()) {
  for (let i = 0; i < 20; i++) {
    r.latency.total.observe(0.0003 * (i + 1));
    r.latency.upstream.observe(0.0002 * (i + 1));
  }
  for (const b of r.backends.values()) {
    b.requests = 2;
    b.setFlag('pending', false);
  }
}

const stats = new ProxyStats();
const certs = new CertStore({ dir: '/nonexistent', log: silentLogger() });
const metrics = createMetrics(table, stats, certs, undefined, () => table.version, { detailMax, log: silentLogger() });
const admin = await startAdmin({
  table, listeners: { ports: [80], failures: new Map() }, metrics, version: () => table.version, certs, log: silentLogger(),
  discoveryError: () => undefined, accepting: () => true,
}, '127.0.0.1', 0);
const port = (admin.server.address() as { port: number }).port;

/** Worst lag of a 1 ms timer while `work` runs, in ms. */
async function stall<T>(work: () => Promise<T>): Promise<{ result: T; maxLag: number }> {
  let maxLag = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    maxLag = Math.max(maxLag, now - last - 1);
    last = now;
  }, 1);
  try {
    return { result: await work(), maxLag };
  } finally {
    clearInterval(timer);
  }
}

const run = promisify(execFile);
const scrape = async () => {
  const { stdout } = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{size_download} %{time_total}', `http://127.0.0.1:${port}/metrics`]);
  const [bytes, seconds] = stdout.split(' ').map(Number) as [number, number];
  return { bytes, ms: seconds * 1000 };
};

const idle = await stall(() => new Promise((r) => setTimeout(r, 2000)));
console.log(`${ROUTES} routes × ${BACKENDS} backends, --metrics-detail-max ${detailMax ?? 'default'}; idle: worst timer lag ${idle.maxLag.toFixed(1)} ms over 2 s`);
console.log('| scrape | size | total | worst event-loop stall |');
console.log('|---:|---:|---:|---:|');
for (let i = 1; i <= SCRAPES; i++) {
  const { result, maxLag } = await stall(scrape);
  console.log(`| ${i} | ${(result.bytes / 1e6).toFixed(2)} MB | ${Math.round(result.ms)} ms | ${Math.round(maxLag)} ms |`);
}
const ms = (f: () => void) => {
  const t0 = performance.now();
  f();
  return Math.round(performance.now() - t0);
};
// With workers: each worker's table counts (here, a second table like the
// first), reports its increments over IPC, and the primary adds two such
// reports into its own table (the one the scrapes above read).
const workerTable = new Table({ drainTimeout: 1000 });
workerTable.apply({ routes, notices: [] });
const workerRoutes = [...workerTable.routes.values()];
const reporter = new StatsReporter();
const share = new WorkerShare();
const traffic = (n: number) => {
  for (let i = 0; i < n; i++) {
    const r = workerRoutes[(i * 7919) % workerRoutes.length]!;
    r.latency.total.observe(0.0004);
    r.latency.upstream.observe(0.0003);
    for (const b of r.backends.values()) b.requests++;
  }
};
for (const [label, routesWithTraffic] of [['every route had requests (the first report)', ROUTES], ['every route had requests', ROUTES], ['100 routes had requests', 100], ['nothing moved', 0]] as const) {
  traffic(routesWithTraffic);
  const slices: Buffer[] = [];
  let worst = 0;
  let t0 = performance.now();
  const started = t0;
  await reporter.report(workerTable, stats, (slice, last) => {
    slices.push(v8.serialize({ slice, last }));
    worst = Math.max(worst, performance.now() - t0);
  }, async () => {
    await new Promise((r) => setImmediate(r));
    t0 = performance.now();
  });
  const total = performance.now() - started;
  const primary = ms(() => {
    for (let w = 0; w < 2; w++) {
      for (const buf of slices) {
        const { slice, last } = v8.deserialize(buf) as { slice: StatsReport; last: boolean };
        share.add(table, stats, slice, last);
      }
    }
  });
  const kB = slices.reduce((n, b) => n + b.length, 0) / 1e3;
  console.log(`with workers, ${label}: each worker ${Math.round(total)} ms in ${slices.length} slices (the longest ${Math.round(worst)} ms; ${kB.toFixed(1)} kB over IPC), the primary ${primary} ms (two reports added)`);
}
await admin.close();
certs.stop();
process.exit(0);
