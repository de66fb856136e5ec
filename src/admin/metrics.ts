// Prometheus metrics. Hot-path counters live as plain numbers on the table's
// backends and in ProxyStats; they are read here only when /metrics is scraped.
import { Counter, Gauge, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import { BUCKETS, type Histogram } from '../table/latency.js';
import type { ProxyStats } from '../proxy/context.js';
import type { Table } from '../table/table.js';
import type { AcmeCoordinator } from '../tls/acme-coordinator.js';
import type { CertStore } from '../tls/store.js';

export interface Metrics {
  registry: Registry;
  discoveryErrors: Counter<'provider'>;
  acmePeerErrors: Counter;
  tableUpdates: Counter;
}

type RouteOf<T> = T extends Map<string, infer R> ? R : never;

/**
 * A Prometheus histogram read from the counts the proxy keeps on each route
 * (src/table/latency.ts): prom-client's own Histogram would cost a label lookup
 * per request on the hot path.
 */
function latencyMetric(name: string, help: string, table: Table, pick: (r: RouteOf<Table['routes']>) => Histogram): Metric {
  return {
    name, help, type: 'histogram', aggregator: 'sum',
    get() {
      const values: { metricName: string; labels: Record<string, string | number>; value: number }[] = [];
      for (const r of table.routes.values()) {
        if (r.spec.mode === 'tcp') continue;
        const h = pick(r);
        const labels = { route: r.spec.name, port: String(r.spec.port) };
        let cumulative = 0;
        for (let i = 0; i < BUCKETS.length; i++) {
          cumulative += h.counts[i]!;
          values.push({ metricName: `${name}_bucket`, labels: { ...labels, le: BUCKETS[i]! }, value: cumulative });
        }
        values.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: h.count });
        values.push({ metricName: `${name}_sum`, labels, value: h.sum });
        values.push({ metricName: `${name}_count`, labels, value: h.count });
      }
      return { name, help, type: 'histogram', aggregator: 'sum', values };
    },
  } as unknown as Metric;
}

export function createMetrics(table: Table, stats: ProxyStats, certs: CertStore, acme?: AcmeCoordinator): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'meshd_process_' });
  const backendLabels = ['route', 'port', 'backend', 'node'] as const;
  const labelsOf = (b: ReturnType<Table['allBackends']> extends Generator<infer T> ? T : never) => ({
    route: b.route.spec.name, port: String(b.route.spec.port), backend: `${b.host}:${b.port}`, node: b.node ?? '',
  });

  new Counter({
    name: 'meshd_backend_requests_total', help: 'Requests (L7) or connections (L4) sent to a backend.', labelNames: backendLabels, registers: [registry],
    collect() {
      this.reset();
      for (const b of table.allBackends()) this.inc(labelsOf(b), b.requests);
    },
  });
  new Counter({
    name: 'meshd_backend_errors_total', help: 'Upstream errors by backend and error code.', labelNames: [...backendLabels, 'code'], registers: [registry],
    collect() {
      this.reset();
      for (const b of table.allBackends()) for (const [code, n] of b.errors) this.inc({ ...labelsOf(b), code }, n);
    },
  });
  new Gauge({
    name: 'meshd_backend_active', help: 'In-flight requests or open connections per backend.', labelNames: backendLabels, registers: [registry],
    collect() {
      this.reset();
      for (const b of table.allBackends()) this.set(labelsOf(b), b.active);
    },
  });
  new Gauge({
    name: 'meshd_backend_healthy', help: '1 when a backend passes active and passive checks, else 0.', labelNames: backendLabels, registers: [registry],
    collect() {
      this.reset();
      for (const b of table.allBackends()) this.set(labelsOf(b), b.healthy ? 1 : 0);
    },
  });
  new Gauge({
    name: 'meshd_route_eligible_backends', help: 'Backends that currently receive new work, per route.', labelNames: ['route', 'port'], registers: [registry],
    collect() {
      this.reset();
      for (const r of table.routes.values()) this.set({ route: r.spec.name, port: String(r.spec.port) }, r.eligibleCount);
    },
  });
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
  registry.registerMetric(latencyMetric('meshd_request_duration_seconds', 'L7: time from a request to the end of its answer, per route.', table, (r) => r.latency.total));
  registry.registerMetric(latencyMetric('meshd_upstream_response_seconds', 'L7: time from sending a request to a backend to its response head, per route.', table, (r) => r.latency.upstream));
  new Gauge({
    name: 'meshd_table_version', help: 'Version of the routing table in force (increments on each change).', registers: [registry],
    collect() {
      this.set(table.version);
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
    acmePeerErrors: new Counter({ name: 'meshd_acme_peer_errors_total', help: 'ACME lines from the peer stream that could not be used (malformed, or sealed under another token).', registers: [registry] }),
    discoveryErrors: new Counter({ name: 'meshd_discovery_errors_total', help: 'Failed reads of the route source.', labelNames: ['provider'], registers: [registry] }),
    tableUpdates: new Counter({ name: 'meshd_table_updates_total', help: 'Routing tables applied.', registers: [registry] }),
  };
}
