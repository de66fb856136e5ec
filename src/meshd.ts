// Wiring: route source → compile → live table → listeners, probes and admin API.
// With --workers N > 1 the listeners live in N worker processes (src/workers/)
// and this process feeds them. `startMeshd` is what the CLI runs; tests start
// it in-process the same way.
import fs from 'node:fs';
import os from 'node:os';
import type { FastifyInstance } from 'fastify';
import { createMetrics, type Metrics } from './admin/metrics.js';
import { startAdmin } from './admin/server.js';
import { ConfigError, type Config } from './config.js';
import type { Logger } from './core/log.js';
import { startSource } from './discovery/source.js';
import type { DockerReader } from './discovery/swarm.js';
import { Prober } from './health/prober.js';
import { ProxyStats, proxyContext } from './proxy/context.js';
import { drain, Listeners, type ListenerState } from './proxy/listeners.js';
import type { CompileDefaults, RouteChanges, RoutingTable } from './table/spec.js';
import { Table } from './table/table.js';
import { AcmeCoordinator } from './tls/acme-coordinator.js';
import { ChallengeSet } from './tls/challenges.js';
import { CertStore } from './tls/store.js';
import { WorkerPool } from './workers/pool.js';

export interface Meshd {
  table: Table;
  listeners: ListenerState;
  metrics: Metrics;
  stats: ProxyStats;
  certs: CertStore;
  acme: AcmeCoordinator;
  admin: FastifyInstance;
  /** Resolves once a table has been applied and its ports reconciled. */
  settled(): Promise<void>;
  /** Graceful stop: readiness off, stop accepting, let in-flight work finish (up to the drain timeout). */
  stop(): Promise<void>;
}

/** The admin token, when --admin-token-file is set; a ConfigError naming the flag when it cannot be had. */
function adminToken(config: Config): string | undefined {
  const file = config.adminTokenFile;
  if (file === undefined) return undefined;
  let token: string;
  try {
    token = fs.readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new ConfigError(`--admin-token-file: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  if (!token) throw new ConfigError(`--admin-token-file: ${file} is empty`);
  return token;
}

/**
 * Starts meshd. Aborting `signal` cancels a start still waiting on the Docker
 * engine (the promise rejects with its reason); later steps do not wait on
 * anything remote.
 */
export async function startMeshd(config: Config, log: Logger, docker?: DockerReader, signal?: AbortSignal): Promise<Meshd> {
  const token = adminToken(config);
  const table = new Table({ drainTimeout: config.drainTimeout });
  const stats = new ProxyStats();
  const certs = new CertStore({ dir: config.tlsDir, defaultName: config.tlsDefaultCert, log: log.child({ component: 'tls' }) });
  certs.start();
  const challenges = new ChallengeSet();
  const alog = log.child({ component: 'acme' });
  const acme = new AcmeCoordinator({
    acme: { directoryUrl: config.acmeDirectory, email: config.acmeEmail, caFile: config.acmeCaFile, storageDir: config.acmeStorage },
    certs, challenges, log: alog,
  });
  let pool: WorkerPool | undefined;
  const version = () => pool?.version ?? table.version;
  const metrics = createMetrics(table, stats, certs, acme, version, { detailMax: config.metricsDetailMax, log: log.child({ component: 'metrics' }) });
  // With workers, this process proxies nothing: its table holds the flags they follow and the sums of their counters.
  pool = config.workers > 1
    ? new WorkerPool({ config, log: log.child({ component: 'workers' }), table, stats, ticketKeys: certs.ticketKeys, challenges, registry: metrics.registry })
    : undefined;
  const listeners = pool ? undefined : new Listeners(proxyContext(config, { table, log: log.child({ component: 'proxy' }), stats, certs, challenges }), config.listenHost, log.child({ component: 'listeners' }));
  const prober = new Prober(table, log.child({ component: 'health' }));
  const defaults: CompileDefaults = {
    health: { interval: config.healthInterval, timeout: config.healthTimeout, rise: config.healthRise, fall: config.healthFall },
  };
  const dlog = log.child({ component: 'discovery', provider: config.provider });
  let discoveryError: string | undefined;
  let accepting = true;
  let reconciled: Promise<void> = Promise.resolve();

  // A problem is logged when it appears, not again on every table change.
  let logged = new Set<string>();
  const logProblemsOnce = (next: RoutingTable) => {
    const now = new Set<string>();
    const note = (service: string, port: number | undefined, message: string) => {
      const key = `${service}|${port}|${message}`;
      now.add(key);
      if (!logged.has(key)) dlog.warn({ service, port }, message);
    };
    for (const n of next.notices) note(n.service, n.port, n.message);
    for (const r of next.routes) for (const p of r.problems) note(r.name, r.port, p);
    logged = now;
  };

  const onTable = (next: RoutingTable, changes?: RouteChanges) => {
    discoveryError = undefined;
    certs.setRoutesFiles(next.tls?.certificates ?? []);
    acme.setRoutes(next.routes);
    const diff = changes ?? table.diff(next.routes);
    if (!table.apply(next, diff)) return;
    metrics.tableUpdates.inc();
    dlog.info({ version: table.version, routes: next.routes.length, backends: next.routes.reduce((n, r) => n + r.backends.length, 0) }, 'routing table updated');
    logProblemsOnce(next);
    reconciled = pool ? pool.publish(next, diff) : listeners!.reconcile();
  };
  const onError = (err: unknown) => {
    const message = (err as Error).message ?? String(err);
    metrics.discoveryErrors.inc({ provider: config.provider });
    if (message !== discoveryError) dlog.error({ err: message }, table.loaded ? 'route source failed; keeping the last good table' : 'route source failed; retrying');
    discoveryError = message;
  };

  const onTaskFailed = (task: string, reason: string) => {
    const n = table.markTaskFailed(task);
    if (n) dlog.warn({ task, reason, backends: n }, 'task taken out of rotation');
  };
  const acmeFromPeers = {
    challenges,
    onOrdering: (ordering: boolean) => acme.setOrdering(ordering),
    onCertificate: (names: string[], certPem: string, keyPem: string) => void acme.received(names, certPem, keyPem),
    onBadLine: (reason: string) => {
      metrics.acmePeerErrors.inc();
      alog.warn({ err: reason }, 'ignoring an ACME line from a peer');
    },
  };
  let source: Awaited<ReturnType<typeof startSource>>;
  try {
    source = await startSource(config, { log: dlog, defaults, onTable, onError, onTaskFailed, docker, signal, acme: acmeFromPeers });
  } catch (err) {
    await pool?.stop();
    throw err;
  }
  try {
    acme.attach(source.role !== 'worker', pool ? pool.acmePeers(source.peers) : source.peers);
  } catch (err) {
    await source.stop();
    await pool?.stop();
    throw new ConfigError(`--acme-ca-file: cannot read ${config.acmeCaFile} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }

  const instance = () => ({ hostname: os.hostname(), provider: config.provider, role: source.role, following: source.following?.() ?? null });
  const refresh = pool && (() => pool.collect());
  const admin = await startAdmin({ table, listeners: pool ?? listeners!, version, refresh, metrics, certs, acme, log: log.child({ component: 'admin' }), discoveryError: () => discoveryError, accepting: () => accepting, token, instance },
    config.adminAddr.host, config.adminAddr.port);

  return {
    table, listeners: pool ?? listeners!, metrics, stats, certs, acme, admin,
    settled: () => reconciled,
    async stop() {
      accepting = false;
      // An order in flight cannot be aborted; it may end after meshd, never hold its stop past the drain timeout.
      const acmeStopped = acme.stop();
      await source.stop();
      prober.stop();
      const deadline = Date.now() + config.drainTimeout;
      if (pool) await pool.stop();
      else await drain(listeners!, table, deadline);
      await Promise.race([acmeStopped, new Promise((r) => setTimeout(r, Math.max(0, deadline - Date.now())).unref())]);
      certs.stop();
      await admin.close();
    },
  };
}
