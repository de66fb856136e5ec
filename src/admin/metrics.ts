// Prometheus metrics. Hot-path counters live as plain numbers on the table's
// backends and in ProxyStats; they are read here only when /metrics is scraped.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { BUCKETS, type Histogram } from '../table/latency.js';
import type { ProxyStats } from '../proxy/context.js';
import type { Table } from '../table/table.js';
import type { AcmeCoordinator } from '../tls/acme-coordinator.js';
import type { CertStore } from '../tls/store.js';

export interface Metrics {
  registry: Registry;
  /** The whole exposition: the registry's metrics and the table's families. */
  text(): Promise<string>;
  discoveryErrors: Counter<'provider'>;
  acmePeerErrors: Counter;
  tableUpdates: Counter;
}

/** A metric family written straight from the table, one line per series. */
export interface TableFamily {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  labelNames: string[];
}

const BACKEND_LABELS = ['route', 'port', 'backend', 'node'];

/**
 * The families with a series per backend or per route. At 10,000 routes of 10
 * tasks prom-client took 5 s of the event loop and 57 MB per scrape building
 * them from label objects; written as text from the table directly they are a
 * string concatenation per series.
 */
export const TABLE_FAMILIES: TableFamily[] = [
  { name: 'meshd_backend_requests_total', help: 'Requests (L7) or connections (L4) sent to a backend.', type: 'counter', labelNames: BACKEND_LABELS },
  { name: 'meshd_backend_errors_total', help: 'Upstream errors by backend and error code.', type: 'counter', labelNames: [...BACKEND_LABELS, 'code'] },
  { name: 'meshd_backend_active', help: 'In-flight requests or open connections per backend.', type: 'gauge', labelNames: BACKEND_LABELS },
  { name: 'meshd_backend_healthy', help: '1 when a backend passes active and passive checks, else 0.', type: 'gauge', labelNames: BACKEND_LABELS },
  { name: 'meshd_route_eligible_backends', help: 'Backends that currently receive new work, per route.', type: 'gauge', labelNames: ['route', 'port'] },
  { name: 'meshd_request_duration_seconds', help: 'L7: time from a request to the end of its answer, per route.', type: 'histogram', labelNames: ['route', 'port'] },
  { name: 'meshd_upstream_response_seconds', help: 'L7: time from sending a request to a backend to its response head, per route.', type: 'histogram', labelNames: ['route', 'port'] },
];

/** A label value as the text format wants it. */
function esc(v: string): string {
  return /[\\"\n]/.test(v) ? v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') : v;
}

function head(f: TableFamily): string {
  return `# HELP ${f.name} ${f.help}\n# TYPE ${f.name} ${f.type}\n`;
}

/** The table's families in the Prometheus text format. */
export function tableMetricsText(table: Table): string {
  const [requests, errors, active, healthy, eligible, total, upstream] = TABLE_FAMILIES as [TableFamily, TableFamily, TableFamily, TableFamily, TableFamily, TableFamily, TableFamily];
  const parts = { requests: [head(requests)], errors: [head(errors)], active: [head(active)], healthy: [head(healthy)], eligible: [head(eligible)], total: [head(total)], upstream: [head(upstream)] };
  const le = BUCKETS.map((b) => `,le="${b}"}`);
  const histogram = (out: string[], name: string, labels: string, h: Histogram) => {
    let cumulative = 0;
    for (let i = 0; i < BUCKETS.length; i++) {
      cumulative += h.counts[i]!;
      out.push(`${name}_bucket{${labels}${le[i]} ${cumulative}\n`);
    }
    out.push(`${name}_bucket{${labels},le="+Inf"} ${h.count}\n${name}_sum{${labels}} ${h.sum}\n${name}_count{${labels}} ${h.count}\n`);
  };
  for (const r of table.routes.values()) {
    const route = `route="${esc(r.spec.name)}",port="${r.spec.port}"`;
    parts.eligible.push(`meshd_route_eligible_backends{${route}} ${r.eligibleCount}\n`);
    if (r.spec.mode !== 'tcp') {
      histogram(parts.total, total.name, route, r.latency.total);
      histogram(parts.upstream, upstream.name, route, r.latency.upstream);
    }
    for (const b of r.backends.values()) {
      const labels = `{${route},backend="${esc(b.host.includes(':') ? `[${b.host}]` : b.host)}:${b.port}",node="${esc(b.node ?? '')}"`;
      parts.requests.push(`meshd_backend_requests_total${labels}} ${b.requests}\n`);
      for (const [code, n] of b.errors) parts.errors.push(`meshd_backend_errors_total${labels},code="${esc(code)}"} ${n}\n`);
      parts.active.push(`meshd_backend_active${labels}} ${b.active}\n`);
      parts.healthy.push(`meshd_backend_healthy${labels}} ${b.healthy ? 1 : 0}\n`);
    }
  }
  return Object.values(parts).map((lines) => lines.join('')).join('');
}

export function createMetrics(table: Table, stats: ProxyStats, certs: CertStore, acme?: AcmeCoordinator, version = () => table.version): Metrics {
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
    text: async () => (await registry.metrics()) + tableMetricsText(table),
    acmePeerErrors: new Counter({ name: 'meshd_acme_peer_errors_total', help: 'ACME lines from the peer stream that could not be used (malformed, or sealed under another token).', registers: [registry] }),
    discoveryErrors: new Counter({ name: 'meshd_discovery_errors_total', help: 'Failed reads of the route source.', labelNames: ['provider'], registers: [registry] }),
    tableUpdates: new Counter({ name: 'meshd_table_updates_total', help: 'Routing tables applied.', registers: [registry] }),
  };
}
