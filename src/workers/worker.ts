// A worker process (--workers N > 1): it proxies every published port and
// nothing else. The primary sends it the routing table, health flags,
// certificates and ACME challenges; it reports back the flags its own traffic
// changed (passive ejection), its counters when asked, and each table once its
// ports are reconciled. It stops when the primary says so, or goes away.
import type { Config } from '../config.js';
import { createLogger, type Logger } from '../core/log.js';
import { ProxyStats, proxyContext } from '../proxy/context.js';
import { drain, Listeners } from '../proxy/listeners.js';
import { routeKey, type RouteChanges, type RouteSpec, type RoutingTable } from '../table/spec.js';
import { Table } from '../table/table.js';
import { acmeSource } from '../tls/acme-coordinator.js';
import { ChallengeSet } from '../tls/challenges.js';
import { CertStore } from '../tls/store.js';
import { RELAYED_FLAGS, type FlagChange, type FromWorker, type ToWorker } from './messages.js';
import { StatsReporter } from './stats.js';

const send = (m: FromWorker) => void process.send!(m);

/** A limit for the whole group, shared out: each worker holds its part. */
const share = (n: number, workers: number) => Math.max(1, Math.ceil(n / workers));

class WorkerProxy {
  readonly #config: Config;
  readonly #log: Logger;
  readonly #table: Table;
  readonly #stats = new ProxyStats();
  readonly #reporter = new StatsReporter();
  readonly #certs: CertStore;
  readonly #challenges = new ChallengeSet();
  readonly #listeners: Listeners;
  /** Set while applying what the primary sent, so only this worker's own changes go back. */
  #relaying = false;
  /** The version of the table this worker has (0: none yet). */
  #version = 0;
  #stopping: Promise<void> | undefined;

  constructor(init: Extract<ToWorker, { t: 'init' }>) {
    const config = (this.#config = init.config);
    this.#log = createLogger(config.logLevel).child({ worker: init.worker });
    this.#table = new Table({ drainTimeout: config.drainTimeout });
    this.#certs = new CertStore({ dir: config.tlsDir, defaultName: config.tlsDefaultCert, log: this.#log.child({ component: 'tls' }), ticketKeys: init.ticketKeys });
    this.#certs.start();
    const ctx = proxyContext(config, { table: this.#table, log: this.#log.child({ component: 'proxy' }), stats: this.#stats, certs: this.#certs, challenges: this.#challenges }, share(config.maxConnections, config.workers));
    this.#listeners = new Listeners(ctx, config.listenHost, this.#log.child({ component: 'listeners' }));
    this.#table.on('health', (b, flag, value) => {
      if (this.#relaying || !(RELAYED_FLAGS as readonly string[]).includes(flag)) return;
      send({ t: 'health', route: routeKey(b.route.spec), backend: b.key, flag: flag as FlagChange['flag'], value });
    });
  }

  handle(m: ToWorker): void {
    switch (m.t) {
      case 'table': return void this.#applyTable(m.version, m.table, m.flags);
      case 'routes': return void this.#applyRoutes(m);
      case 'health': return this.#relay([m]);
      case 'certificate': return void this.#certs.put(acmeSource(m.names), m.certPem, m.keyPem);
      case 'challenges':
        this.#challenges.apply(m.snapshot);
        return send({ t: 'challenges', seq: m.seq });
      case 'stats': return void this.#reporter.report(this.#table, this.#stats, (report, last) => send({ t: 'stats', id: m.id, report, last }), () => new Promise((r) => setImmediate(r)));
      case 'stop': return void this.stop();
    }
  }

  /** A route with its connection limit shared out among the workers. */
  #share(r: RouteSpec): RouteSpec {
    return r.maxConnections === undefined ? r : { ...r, maxConnections: share(r.maxConnections, this.#config.workers) };
  }

  async #applyTable(version: number, next: RoutingTable, flags: FlagChange[]): Promise<void> {
    this.#version = version;
    this.#certs.setRoutesFiles(next.tls?.certificates ?? []);
    this.#table.apply({ ...next, routes: next.routes.map((r) => this.#share(r)) });
    await this.#applied(version, flags);
  }

  /** The routes that changed since the table this worker has; one that does not follow it asks for the whole table. */
  async #applyRoutes(m: Extract<ToWorker, { t: 'routes' }>): Promise<void> {
    if (m.base !== this.#version) return send({ t: 'resync', version: this.#version });
    this.#version = m.version;
    this.#certs.setRoutesFiles(m.tls?.certificates ?? []);
    const changes: RouteChanges = new Map();
    for (const key of m.removed) changes.set(key, undefined);
    for (const r of m.routes) changes.set(routeKey(r), this.#share(r));
    this.#table.change(changes, m.notices ?? this.#table.notices, m.tls);
    await this.#applied(m.version, m.flags);
  }

  async #applied(version: number, flags: FlagChange[]): Promise<void> {
    this.#relay(flags);
    await this.#listeners.reconcile();
    send({ t: 'applied', version, ports: this.#listeners.ports, failures: new Map(this.#listeners.failures) });
  }

  #relay(changes: FlagChange[]): void {
    this.#relaying = true;
    for (const c of changes) {
      const b = this.#table.routes.get(c.route)?.backends.get(c.backend);
      if (!b) continue;
      // The primary's probes ended an ejection: this worker's failure streak starts over, as recordProbe does there.
      if (c.flag === 'ejected' && !c.value && b.ejected) b.consecutiveFailures = 0;
      b.setFlag(c.flag, c.value);
    }
    this.#relaying = false;
  }

  /** Same drain as a single process: stop accepting, in-flight work finishes within --drain-timeout. */
  stop(): Promise<void> {
    return (this.#stopping ??= (async () => {
      await drain(this.#listeners, this.#table, Date.now() + this.#config.drainTimeout);
      this.#certs.stop();
      process.exit(0);
    })());
  }
}

let proxy: WorkerProxy | undefined;
process.on('message', (m: ToWorker) => {
  if (m.t === 'init') proxy ??= new WorkerProxy(m);
  else if (proxy) proxy.handle(m);
  else if (m.t === 'stop') process.exit(0);
});
// The primary decides when workers stop (a terminal's Ctrl-C reaches the whole group); without it, they drain and go.
process.on('SIGINT', () => {});
process.on('SIGTERM', () => {});
process.on('disconnect', () => (proxy ? void proxy.stop() : process.exit(0)));
send({ t: 'ready' });
