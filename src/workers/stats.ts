// The counters a worker's proxy keeps, as one plain object the primary can ask
// for over IPC, and their sum over the workers written back into the primary's
// own table and ProxyStats, so /metrics, /api/routes and the dashboard read the
// whole group the way they read a single process.
import type { ProxyStats } from '../proxy/context.js';
import { BUCKETS, type Histogram } from '../table/latency.js';
import type { Route, Table } from '../table/table.js';

interface HistogramCounts {
  counts: number[];
  sum: number;
  count: number;
}

export interface BackendCounts {
  requests: number;
  failures: number;
  errors: Map<string, number>;
  active: number;
}

export interface WorkerStats {
  /** By route key, then backend key. */
  backends: Map<string, Map<string, BackendCounts>>;
  /** L7 latency by route key. */
  latency: Map<string, { total: HistogramCounts; upstream: HistogramCounts }>;
  answered: Map<string, number>;
  retries: number;
  connections: number;
  limits: Map<string, number>;
  handshakeFailures: Map<string, number>;
  rss: number;
}

export const routeKey = (r: Route) => `${r.spec.port} ${r.spec.name}`;

const histogram = (h: Histogram): HistogramCounts => ({ counts: [...h.counts], sum: h.sum, count: h.count });

export function emptyStats(): WorkerStats {
  return { backends: new Map(), latency: new Map(), answered: new Map(), retries: 0, connections: 0, limits: new Map(), handshakeFailures: new Map(), rss: 0 };
}

/** A worker's counters now. */
export function takeStats(table: Table, stats: ProxyStats): WorkerStats {
  const out = emptyStats();
  for (const r of table.routes.values()) {
    const key = routeKey(r);
    const backends = new Map<string, BackendCounts>();
    for (const b of r.backends.values()) backends.set(b.key, { requests: b.requests, failures: b.failures, errors: new Map(b.errors), active: b.active });
    out.backends.set(key, backends);
    if (r.spec.mode !== 'tcp') out.latency.set(key, { total: histogram(r.latency.total), upstream: histogram(r.latency.upstream) });
  }
  out.answered = new Map(stats.answered);
  out.retries = stats.retries;
  out.connections = stats.connections;
  out.limits = new Map(stats.limits);
  out.handshakeFailures = new Map(stats.handshakeFailures);
  out.rss = process.memoryUsage.rss();
  return out;
}

function addMap(into: Map<string, number>, from: Map<string, number>): void {
  for (const [k, n] of from) into.set(k, (into.get(k) ?? 0) + n);
}

function addHistogram(into: HistogramCounts, from: HistogramCounts): void {
  for (let i = 0; i < into.counts.length; i++) into.counts[i]! += from.counts[i] ?? 0;
  into.sum += from.sum;
  into.count += from.count;
}

/**
 * Adds `from` into `into`. `counters` only: what a worker that exited had
 * counted stays in the sums, its in-flight work and connections do not.
 */
export function addStats(into: WorkerStats, from: WorkerStats, countersOnly = false): void {
  for (const [rk, backends] of from.backends) {
    let mine = into.backends.get(rk);
    if (!mine) into.backends.set(rk, (mine = new Map()));
    for (const [bk, c] of backends) {
      let m = mine.get(bk);
      if (!m) mine.set(bk, (m = { requests: 0, failures: 0, errors: new Map(), active: 0 }));
      m.requests += c.requests;
      m.failures += c.failures;
      addMap(m.errors, c.errors);
      if (!countersOnly) m.active += c.active;
    }
  }
  for (const [rk, l] of from.latency) {
    let mine = into.latency.get(rk);
    if (!mine) {
      const zero = () => ({ counts: new Array<number>(BUCKETS.length + 1).fill(0), sum: 0, count: 0 });
      into.latency.set(rk, (mine = { total: zero(), upstream: zero() }));
    }
    addHistogram(mine.total, l.total);
    addHistogram(mine.upstream, l.upstream);
  }
  addMap(into.answered, from.answered);
  into.retries += from.retries;
  addMap(into.limits, from.limits);
  addMap(into.handshakeFailures, from.handshakeFailures);
  if (!countersOnly) {
    into.connections += from.connections;
    into.rss += from.rss;
  }
}

function setHistogram(h: Histogram, from: HistogramCounts | undefined): void {
  h.counts.set(from?.counts ?? new Array<number>(h.counts.length).fill(0));
  h.sum = from?.sum ?? 0;
  h.count = from?.count ?? 0;
}

/** Writes the group's sums into the primary's table and ProxyStats, which proxy nothing themselves. */
export function writeStats(table: Table, stats: ProxyStats, sum: WorkerStats): void {
  for (const r of table.routes.values()) {
    const key = routeKey(r);
    const backends = sum.backends.get(key);
    for (const b of r.backends.values()) {
      const c = backends?.get(b.key);
      b.requests = c?.requests ?? 0;
      b.failures = c?.failures ?? 0;
      b.active = c?.active ?? 0;
      b.errors.clear();
      for (const [code, n] of c?.errors ?? []) b.errors.set(code, n);
    }
    const l = sum.latency.get(key);
    setHistogram(r.latency.total, l?.total);
    setHistogram(r.latency.upstream, l?.upstream);
  }
  const replace = <K>(into: Map<K, number>, from: Map<string, number>) => {
    into.clear();
    for (const [k, n] of from) into.set(k as K, n);
  };
  replace(stats.answered, sum.answered);
  stats.retries = sum.retries;
  stats.connections = sum.connections;
  replace(stats.limits, sum.limits);
  replace(stats.handshakeFailures, sum.handshakeFailures);
}
