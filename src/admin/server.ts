// The admin API (fastify): liveness, readiness, Prometheus metrics, the live
// routing table with health and its dashboard, for operators and for meshd's
// own HEALTHCHECK.
import { Readable } from 'node:stream';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { Counter } from 'prom-client';
import type { Logger } from '../core/log.js';
import { bearerMatches } from '../core/token.js';
import type { ListenerState } from '../proxy/listeners.js';
import { routesByPortName, type Table } from '../table/table.js';
import type { AcmeCoordinator } from '../tls/acme-coordinator.js';
import type { CertStore } from '../tls/store.js';
import { DASHBOARD_OPEN_PATHS, registerDashboard, sessionMatches } from './dashboard.js';
import type { InstanceView } from './live-view.js';
import type { Metrics } from './metrics.js';

export interface AdminDeps {
  table: Table;
  listeners: ListenerState;
  metrics: Metrics;
  /** The table version every proxy serves (with workers, the last one they all confirmed). */
  version: () => number;
  /** Brings the table's counters up to date first (with workers, their sums); absent when the proxy counts into the table itself. */
  refresh?: (() => Promise<void>) | undefined;
  certs: CertStore;
  acme?: AcmeCoordinator | undefined;
  log: Logger;
  /** Discovery's last error, if its last read failed. */
  discoveryError: () => string | undefined;
  /** False once shutdown has begun, so load balancers in front stop sending. */
  accepting: () => boolean;
  /** Bearer token every path but the probes requires (--admin-token-file); open when absent. */
  token?: string | undefined;
  /** Role and provider, for the dashboard's header. */
  instance?: (() => InstanceView) | undefined;
}

/** Liveness and readiness stay open: orchestrators and HEALTHCHECKs probe them without a token. */
const OPEN_PATHS = new Set(['/healthz', '/readyz']);

/** Which certificate an https route's hosts get, and why a client would refuse it. */
function routeTls(hosts: string[], certs: CertStore) {
  const def = certs.default;
  if (!def) return { hosts: [], problems: [`no certificate loaded: TLS handshakes on this port are refused; add NAME.crt and NAME.key to ${certs.dir} or tls.certificates to the routes file`] };
  const problems: string[] = [];
  const served = (hosts.length ? hosts : ['*']).map((host) => {
    const own = host === '*' ? undefined : certs.certificateFor(host);
    if (host !== '*' && !own) problems.push(`no certificate names ${host}: the default certificate (${def.names.join(', ') || def.source}) is served, which clients will refuse`);
    return { host, certificate: (own ?? def).source };
  });
  return { hosts: served, problems };
}

/** Routes per /api/routes page by default: a page stays well under a megabyte or so per thousand backends. */
export const ROUTES_PAGE = 1000;
const ROUTES_PAGE_MAX = 10_000;

/** `?offset=&limit=` of /api/routes, checked; undefined when malformed. */
function routesPage(query: unknown): { offset: number; limit: number } | undefined {
  const q = (query ?? {}) as Record<string, unknown>;
  const num = (v: unknown, def: number) => (v === undefined ? def : typeof v === 'string' && /^\d{1,9}$/.test(v) ? Number(v) : NaN);
  const offset = num(q.offset, 0);
  const limit = num(q.limit, ROUTES_PAGE);
  return Number.isNaN(offset) || Number.isNaN(limit) || limit < 1 || limit > ROUTES_PAGE_MAX ? undefined : { offset, limit };
}

function routesView(table: Table, version: number, listeners: ListenerState, certs: CertStore, acme: AcmeCoordinator | undefined, discoveryError: string | undefined, page: { offset: number; limit: number }) {
  const all = routesByPortName(table);
  const next = page.offset + page.limit < all.length ? page.offset + page.limit : null;
  return {
    version,
    loaded: table.loaded,
    ...(discoveryError ? { discoveryError } : {}),
    total: all.length,
    offset: page.offset,
    next,
    routes: all.slice(page.offset, page.offset + page.limit).map((r) => ({
      name: r.spec.name,
      port: r.spec.port,
      mode: r.spec.mode,
      hosts: r.spec.hosts,
      ...(r.spec.paths ? { paths: r.spec.paths, stripPrefix: r.spec.stripPrefix === true } : {}),
      lb: r.spec.lb ?? 'round-robin',
      ...(r.spec.sticky ? { sticky: r.spec.sticky } : {}),
      health: r.spec.health,
      proxyProtocol: r.spec.proxyProtocol,
      ...(r.spec.from ? { from: r.spec.from } : {}),
      listening: listeners.ports.includes(r.spec.port),
      ...(r.spec.mode === 'https' ? { tls: routeTls(r.spec.hosts, certs) } : {}),
      ...(r.spec.acme && acme ? { acme: acme.status(r.spec) } : {}),
      ...(listeners.failures.has(r.spec.port) ? { listenError: listeners.failures.get(r.spec.port) } : {}),
      ...(r.spec.backend ? { backend: r.spec.backend } : {}),
      problems: r.spec.problems,
      eligible: r.eligibleCount,
      backends: [...r.backends.values()].map((b) => ({
        id: b.id,
        address: `${b.host}:${b.port}`,
        node: b.node ?? null,
        state: b.draining ? 'draining' : b.eligible ? 'active' : 'out',
        health: { active: b.activeDown ? 'down' : b.pending ? 'pending' : 'up', ejected: b.ejected, failed: b.failed, lastProbeError: b.lastProbeError ?? null },
        active: b.active,
        requests: b.requests,
        failures: b.failures,
      })),
    })),
    notices: table.notices,
    tls: certs.view(),
  };
}

export async function startAdmin(deps: AdminDeps, host: string, port: number): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    // Scrapes and probes every few seconds would drown the log.
    logController: new LogController({ disableRequestLogging: true }),
  });
  const unauthorized = new Counter({ name: 'meshd_admin_unauthorized_total', help: 'Admin requests refused for a missing or wrong bearer token.', registers: [deps.metrics.registry] });
  const { token } = deps;
  if (token !== undefined) {
    // onRequest runs before routing, so unknown paths are guarded too.
    app.addHook('onRequest', async (req, reply) => {
      const path = req.url.split('?', 1)[0]!;
      if (OPEN_PATHS.has(path) || DASHBOARD_OPEN_PATHS.has(path)) return;
      // The dashboard's session cookie stands for the token: EventSource cannot send a header.
      if (bearerMatches(req.headers.authorization, token) || sessionMatches(req.headers.cookie, token)) return;
      unauthorized.inc();
      deps.log.warn({ remote: req.ip, path }, 'admin request without the right token');
      return reply.code(401).header('www-authenticate', 'Bearer realm="meshd"').send({ error: 'unauthorized: send Authorization: Bearer <token>' });
    });
  }
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const version = deps.version();
    const ready = version > 0 && deps.accepting();
    return reply.code(ready ? 200 : 503).send({ ready, tableVersion: version });
  });
  app.get('/metrics', async (_req, reply) => {
    await deps.refresh?.();
    // Streamed in slices: a large table's scrape never holds the proxy's event loop for long.
    return reply.type(deps.metrics.registry.contentType).send(Readable.from(deps.metrics.chunks()));
  });
  app.get('/api/routes', async (req, reply) => {
    const page = routesPage(req.query);
    if (!page) return reply.code(400).send({ error: `offset must be a whole number, and limit one from 1 to ${ROUTES_PAGE_MAX}` });
    await deps.refresh?.();
    return routesView(deps.table, deps.version(), deps.listeners, deps.certs, deps.acme, deps.discoveryError(), page);
  });
  await registerDashboard(app, { ...deps, onRefused: () => unauthorized.inc() });
  await app.listen({ host, port });
  return app;
}
