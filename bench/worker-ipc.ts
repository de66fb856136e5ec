// What one route change costs a primary and its worker processes (--workers 2)
// at 10,000 routes of 10 backends each: the real WorkerPool and worker.ts on
// loopback, every route on one http port with a host of its own. The primary's
// table is applied and the pool publishes it, as meshd does on each table;
// measured, in CPU ms: the primary (this process, from apply until every worker
// confirmed) and each worker (all its threads, from /proc/PID/task/*/schedstat,
// so the collector's threads count), for the first table and then for one
// backend changing its address (median of CHANGES, after as many that warm up).
//
//   npm run build && node dist/bench/worker-ipc.js
import cluster from 'node:cluster';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import { Registry } from 'prom-client';
import { parseConfig, type Config } from '../src/config.js';
import { silentLogger } from '../src/core/log.js';
import { ProxyStats } from '../src/proxy/context.js';
import type { RouteSpec, RoutingTable } from '../src/table/spec.js';
import { routeKey } from '../src/table/spec.js';
import { Table } from '../src/table/table.js';
import { ChallengeSet } from '../src/tls/challenges.js';
import { WorkerPool } from '../src/workers/pool.js';

const ROUTES = 10_000;
const BACKENDS = 10;
const WORKERS = 2;
const CHANGES = 15;

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

const health = { interval: 2000, timeout: 1000, rise: 2, fall: 3 };
function route(i: number, port: number, moved = 0): RouteSpec {
  const backends = Array.from({ length: BACKENDS }, (_, b) => {
    const n = i * BACKENDS + b;
    return { id: `task${String(n).padStart(8, '0')}`, host: b === 0 && moved ? `172.16.${moved >> 8 & 255}.${moved & 255}` : `10.${n >> 16 & 255}.${n >> 8 & 255}.${n & 255}`, port: 8080, draining: false };
  });
  return { name: `app${i}`, mode: 'http', port, hosts: [`app${i}.example.com`], health, backends, proxyProtocol: false, problems: [] };
}

/** CPU nanoseconds of every thread of a process. */
function threadsNs(pid: number): number {
  let ns = 0;
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(fs.readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
    } catch { /* thread gone */ }
  }
  return ns;
}

const workerPids = () => Object.values(cluster.workers ?? {}).map((w) => w!.process.pid!);
const settle = () => new Promise((r) => setTimeout(r, 150));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

const port = await freePort();
const config = parseConfig(['--provider', 'file', '--routes', '/dev/null', '--listen-host', '127.0.0.1', '--workers', String(WORKERS), '--log-level', 'error']) as Config;
const table = new Table({ drainTimeout: 1000 });
const pool = new WorkerPool({
  config, log: silentLogger(), table, stats: new ProxyStats(), ticketKeys: crypto.randomBytes(48), challenges: new ChallengeSet(), registry: new Registry(),
});
while (workerPids().length < WORKERS) await new Promise((r) => setTimeout(r, 50));
await new Promise((r) => setTimeout(r, 1000)); // workers up and idle

const routes = Array.from({ length: ROUTES }, (_, i) => route(i, port));
/** Applies `next` to the primary's table and publishes it; CPU ms of the primary and of each worker. */
async function publish(next: RoutingTable, changes?: Map<string, RouteSpec | undefined>): Promise<{ primary: number; workers: number[] }> {
  await settle();
  const pids = workerPids();
  const before = pids.map(threadsNs);
  const t0 = process.cpuUsage();
  const diff = changes ?? table.diff(next.routes);
  table.apply(next, diff);
  await pool.publish(next, diff);
  const cpu = process.cpuUsage(t0);
  await settle();
  return { primary: (cpu.user + cpu.system) / 1000, workers: pids.map((p, i) => (threadsNs(p) - before[i]!) / 1e6) };
}

const first = await publish({ routes, notices: [] });
const primary: number[] = [];
const worker: number[] = [];
for (let i = 1; i <= 2 * CHANGES; i++) {
  const at = (i * 7919) % ROUTES;
  const spec = route(at, port, i);
  routes[at] = spec;
  const r = await publish({ routes: routes.slice(), notices: [] }, new Map([[routeKey(spec), spec]]));
  if (i <= CHANGES) continue;
  primary.push(r.primary);
  worker.push(...r.workers);
}
const rss = workerPids().map((pid) => Math.round(Number(/^VmRSS:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024));
console.log(`| ${ROUTES.toLocaleString('en')} routes × ${BACKENDS} backends, ${WORKERS} workers | CPU ms |`);
console.log('|---|---:|');
console.log(`| first table: primary | ${first.primary.toFixed(0)} |`);
console.log(`| first table: each worker | ${first.workers.map((w) => w.toFixed(0)).join(', ')} |`);
console.log(`| one backend moves: primary (median) | ${median(primary).toFixed(1)} |`);
console.log(`| one backend moves: a worker (median) | ${median(worker).toFixed(1)} |`);
console.log(`\nWorkers' RSS after: ${rss.join(', ')} MiB.`);
await pool.stop();
process.exit(0);
