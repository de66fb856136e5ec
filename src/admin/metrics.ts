// Prometheus metrics. Hot-path counters live as plain numbers on the table's
// backends and in ProxyStats; they are read here only when /metrics is scraped.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { METRICS_DETAIL_MAX } from '../config.js';
import type { Logger } from '../core/log.js';
import { BUCKETS, Histogram } from '../table/latency.js';
import type { ProxyStats } from '../proxy/context.js';
import type { Backend, Route, Table } from '../table/table.js';
import type { AcmeCoordinator } from '../tls/acme-coordinator.js';
import type { CertStore } from '../tls/store.js';

export interface Metrics {
  registry: Registry;
  /** The whole exposition, in slices with a turn of the event loop between them: the registry's metrics, then the table's families. */
  chunks(): AsyncGenerator<string>;
  discoveryErrors: Counter<'provider'>;
  acmePeerErrors: Counter;
  tableUpdates: Counter;
}

export interface MetricsOptions {
  /** Per-route and per-backend samples written at most; past it, latency per port and backend counters per route (--metrics-detail-max). */
  detailMax?: number;
  log?: Logger;
}

/** A metric family written straight from the table, one line per series. */
export interface TableFamily {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  labelNames: string[];
  /** Past --metrics-detail-max: the labels it keeps, or none when the family is left out. */
  summary?: string[];
}

const BACKEND_LABELS = ['route', 'port', 'backend', 'node'];

/**
 * The families with a series per backend or per route. At 10,000 routes of 10
 * tasks prom-client took 5 s of the event loop and 57 MB per scrape building
 * them from label objects; written as text from the table directly they are a
 * string concatenation per series, in slices that leave the event loop free
 * between them, and past --metrics-detail-max they are summed per route or port.
 */
export const TABLE_FAMILIES: TableFamily[] = [
  { name: 'meshd_backend_requests_total', help: 'Requests (L7) or connections (L4) sent to a backend.', type: 'counter', labelNames: BACKEND_LABELS, summary: ['route', 'port'] },
  { name: 'meshd_backend_errors_total', help: 'Upstream errors by backend and error code.', type: 'counter', labelNames: [...BACKEND_LABELS, 'code'], summary: ['route', 'port', 'code'] },
  { name: 'meshd_backend_active', help: 'In-flight requests or open connections per backend.', type: 'gauge', labelNames: BACKEND_LABELS, summary: ['route', 'port'] },
  { name: 'meshd_backend_healthy', help: '1 when a backend passes active and passive checks, else 0.', type: 'gauge', labelNames: BACKEND_LABELS },
  { name: 'meshd_route_eligible_backends', help: 'Backends that currently receive new work, per route.', type: 'gauge', labelNames: ['route', 'port'], summary: ['route', 'port'] },
  { name: 'meshd_request_duration_seconds', help: 'L7: time from a request to the end of its answer, per route.', type: 'histogram', labelNames: ['route', 'port'], summary: ['port'] },
  { name: 'meshd_upstream_response_seconds', help: 'L7: time from sending a request to a backend to its response head, per route.', type: 'histogram', labelNames: ['route', 'port'], summary: ['port'] },
  { name: 'meshd_metrics_summarised', help: '1 when the table is past --metrics-detail-max: latency is written per port and backend counters per route, backend health is left out.', type: 'gauge', labelNames: [] },
  { name: 'meshd_metrics_detail_samples', help: 'Samples the per-route and per-backend series would take in full (error codes not counted), against --metrics-detail-max.', type: 'gauge', labelNames: [] },
];

/** Routes, backends and lines between two turns of the event loop: a slice takes a few milliseconds. */
const SLICE = 2000;
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A label value as the text format wants it. */
function esc(v: string): string {
  return /[\\"\n]/.test(v) ? v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') : v;
}

function head(f: TableFamily, summarised: boolean): string {
  const help = summarised && f.summary ? `${f.help} Summarised per ${f.summary.includes('route') ? 'route' : 'port'}: the table is past --metrics-detail-max.` : f.help;
  return `# HELP ${f.name} ${help}\n# TYPE ${f.name} ${f.type}\n`;
}

const isL7 = (r: Route) => r.spec.mode !== 'tcp';

/** What the per-route and per-backend families take in samples, error codes aside. */
function detailSamples(routes: Iterable<Route>): number {
  let n = 0;
  for (const r of routes) n += 1 + 3 * r.backends.size + (isL7(r) ? 2 * (BUCKETS.length + 3) : 0);
  return n;
}

const le = BUCKETS.map((b) => `,le="${b}"}`);
function histogram(out: string[], name: string, labels: string, h: Histogram): void {
  let cumulative = 0;
  for (let i = 0; i < BUCKETS.length; i++) {
    cumulative += h.counts[i]!;
    out.push(`${name}_bucket{${labels}${le[i]} ${cumulative}\n`);
  }
  out.push(`${name}_bucket{${labels},le="+Inf"} ${h.count}\n${name}_sum{${labels}} ${h.sum}\n${name}_count{${labels}} ${h.count}\n`);
}

function addInto(into: Histogram, from: Histogram): void {
  for (let i = 0; i < into.counts.length; i++) into.counts[i]! += from.counts[i]!;
  into.sum += from.sum;
  into.count += from.count;
}

const routeLabels = (r: Route) => `route="${esc(r.spec.name)}",port="${r.spec.port}"`;
const backendLabels = (route: string, b: Backend) => `${route},backend="${esc(b.host.includes(':') ? `[${b.host}]` : b.host)}:${b.port}",node="${esc(b.node ?? '')}"`;

/** Calls `each` on every route, yielding what it wrote once SLICE routes, backends and lines are done, and letting the event loop turn. */
async function* sliced(routes: Route[], each: (r: Route, out: string[]) => void): AsyncGenerator<string> {
  let out: string[] = [];
  let work = 0;
  for (const r of routes) {
    each(r, out);
    work += 1 + r.backends.size;
    if (work + out.length < SLICE) continue;
    if (out.length) yield out.join('');
    out = [];
    work = 0;
    await turn();
  }
  if (out.length) yield out.join('');
}

/** One family's lines for these routes, in full or summarised. */
async function* family(f: TableFamily, routes: Route[], summarised: boolean): AsyncGenerator<string> {
  if (summarised && !f.summary) return;
  yield head(f, summarised);
  const name = f.name;
  switch (name) {
    case 'meshd_backend_requests_total':
    case 'meshd_backend_active': {
      const requests = name === 'meshd_backend_requests_total';
      const value = requests ? (b: Backend) => b.requests : (b: Backend) => b.active;
      yield* sliced(routes, (r, out) => {
        const route = routeLabels(r);
        if (summarised) {
          // Backends draining and those gone count too: a sum per route must not fall when a task is replaced.
          let n = requests ? r.closed.requests : 0;
          for (const b of r.backends.values()) n += value(b);
          for (const b of r.retiring.values()) n += value(b);
          out.push(`${name}{${route}} ${n}\n`);
        } else {
          for (const b of r.backends.values()) out.push(`${name}{${backendLabels(route, b)}} ${value(b)}\n`);
        }
      });
      return;
    }
    case 'meshd_backend_errors_total':
      yield* sliced(routes, (r, out) => {
        const route = routeLabels(r);
        if (summarised) {
          const sums = new Map(r.closed.errors);
          for (const list of [r.backends, r.retiring]) for (const b of list.values()) for (const [code, n] of b.errors) sums.set(code, (sums.get(code) ?? 0) + n);
          for (const [code, n] of sums) out.push(`${name}{${route},code="${esc(code)}"} ${n}\n`);
        } else {
          for (const b of r.backends.values()) for (const [code, n] of b.errors) out.push(`${name}{${backendLabels(route, b)},code="${esc(code)}"} ${n}\n`);
        }
      });
      return;
    case 'meshd_backend_healthy':
      yield* sliced(routes, (r, out) => {
        const route = routeLabels(r);
        for (const b of r.backends.values()) out.push(`${name}{${backendLabels(route, b)}} ${b.healthy ? 1 : 0}\n`);
      });
      return;
    case 'meshd_route_eligible_backends':
      yield* sliced(routes, (r, out) => out.push(`${name}{${routeLabels(r)}} ${r.eligibleCount}\n`));
      return;
    case 'meshd_request_duration_seconds':
    case 'meshd_upstream_response_seconds': {
      const of = name === 'meshd_request_duration_seconds' ? (r: Route) => r.latency.total : (r: Route) => r.latency.upstream;
      if (!summarised) {
        yield* sliced(routes, (r, out) => {
          if (isL7(r)) histogram(out, name, routeLabels(r), of(r));
        });
        return;
      }
      const perPort = new Map<number, Histogram>();
      for await (const _ of sliced(routes, (r) => {
        if (!isL7(r)) return;
        let h = perPort.get(r.spec.port);
        if (!h) perPort.set(r.spec.port, (h = new Histogram()));
        addInto(h, of(r));
      }));
      const out: string[] = [];
      for (const [port, h] of [...perPort].sort(([a], [b]) => a - b)) histogram(out, name, `port="${port}"`, h);
      yield out.join('');
      return;
    }
  }
}

/** The table's families in the Prometheus text format, summarised past `detailMax` samples. */
async function* tableMetrics(table: Table, detailMax: number, onMode: (summarised: boolean, samples: number) => void): AsyncGenerator<string> {
  // One route list for every family, so a table change mid-scrape cannot make them disagree.
  const routes = [...table.routes.values()];
  const samples = detailSamples(routes);
  const summarised = samples > detailMax;
  onMode(summarised, samples);
  for (const f of TABLE_FAMILIES) {
    if (f.name === 'meshd_metrics_summarised') yield `${head(f, false)}${f.name} ${summarised ? 1 : 0}\n`;
    else if (f.name === 'meshd_metrics_detail_samples') yield `${head(f, false)}${f.name} ${samples}\n`;
    else yield* family(f, routes, summarised);
  }
}

export function createMetrics(table: Table, stats: ProxyStats, certs: CertStore, acme?: AcmeCoordinator, version = () => table.version, options: MetricsOptions = {}): Metrics {
  const detailMax = options.detailMax ?? METRICS_DETAIL_MAX;
  // Logged when the mode changes, not on every scrape.
  let summarised = false;
  const onMode = (now: boolean, samples: number) => {
    if (now === summarised) return;
    summarised = now;
    if (now) options.log?.warn({ samples, detailMax }, '/metrics summarised: latency per port, backend counters per route, no backend health (--metrics-detail-max)');
    else options.log?.info({ samples, detailMax }, '/metrics back to series per route and per backend');
  };
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'meshd_process_' });
  new Counter({
    name: 'meshd_proxy_answered_total', help: 'Requests or connections meshd ended itself, by reason (NO_HEALTHY_BACKEND, BACKEND_FAILED, BAD_REQUEST, ...).', labelNames: ['code'], registers: [registry],
    collect() {
      this.reset();
      for (const [code, n] of stats.answered) this.inc({ code }, n);
    },
  });
  new Counter({
    name: 'meshd_proxy_retries_total', help: 'Requests or connections retried on another backend.', registers: [registry],
    collect() {
      this.reset();
      this.inc(stats.retries);
    },
  });
  new Counter({
    name: 'meshd_client_limit_trips_total', help: 'Client connections or requests cut by a limit (client-header-timeout, max-connections, ...).', labelNames: ['limit'], registers: [registry],
    collect() {
      this.reset();
      for (const [limit, n] of stats.limits) this.inc({ limit }, n);
    },
  });
  new Gauge({
    name: 'meshd_client_connections', help: 'Open client connections.', registers: [registry],
    collect() {
      this.set(stats.connections);
    },
  });
  new Gauge({
    name: 'meshd_table_version', help: 'Version of the routing table in force (increments on each change).', registers: [registry],
    collect() {
      this.set(version());
    },
  });
  new Counter({
    name: 'meshd_tls_handshake_failures_total', help: 'TLS handshakes that failed on https ports, by reason (no-certificate, protocol-version, no-shared-cipher, plain-http, timeout, reset, other).', labelNames: ['reason'], registers: [registry],
    collect() {
      this.reset();
      for (const [reason, n] of stats.handshakeFailures) this.inc({ reason }, n);
    },
  });
  new Counter({
    name: 'meshd_tls_certificate_errors_total', help: 'Certificate files or puts refused (unparsable, key not matching, expired); the previous certificate keeps serving.', registers: [registry],
    collect() {
      this.reset();
      this.inc(certs.errors);
    },
  });
  new Gauge({
    name: 'meshd_tls_certificate_not_after_seconds', help: 'Expiry (Unix time) of each certificate being served, by source.', labelNames: ['source'], registers: [registry],
    collect() {
      this.reset();
      for (const c of certs.view().certificates) if (c.notAfter) this.set({ source: c.source }, Date.parse(c.notAfter) / 1000);
    },
  });
  new Counter({
    name: 'meshd_acme_orders_total', help: 'ACME orders and renewals this instance made, by result (issued, failed).', labelNames: ['result'], registers: [registry],
    collect() {
      this.reset();
      const c = acme?.counters ?? { issued: 0, failures: 0 };
      this.inc({ result: 'issued' }, c.issued);
      this.inc({ result: 'failed' }, c.failures);
    },
  });
  return {
    registry,
    async *chunks() {
      yield await registry.metrics();
      yield* tableMetrics(table, detailMax, onMode);
    },
    acmePeerErrors: new Counter({ name: 'meshd_acme_peer_errors_total', help: 'ACME lines from the peer stream that could not be used (malformed, or sealed under another token).', registers: [registry] }),
    discoveryErrors: new Counter({ name: 'meshd_discovery_errors_total', help: 'Failed reads of the route source.', labelNames: ['provider'], registers: [registry] }),
    tableUpdates: new Counter({ name: 'meshd_table_updates_total', help: 'Routing tables applied.', registers: [registry] }),
  };
}
