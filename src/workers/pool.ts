// The primary's side of --workers N > 1: it forks the workers (node:cluster),
// keeps each one up to date with the routing table, health flags, certificates
// and ACME challenges, relays what one worker's traffic saw to the others,
// sums their counters when the admin API is read, restarts a worker that dies,
// and drains them all on stop.
import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Config } from '../config.js';
import type { Logger } from '../core/log.js';
import type { ListenerState } from '../proxy/listeners.js';
import type { ProxyStats } from '../proxy/context.js';
import { routeKey, type RouteChanges, type RoutingTable } from '../table/spec.js';
import type { Route, Table } from '../table/table.js';
import type { AcmePeers } from '../tls/acme-coordinator.js';
import type { ChallengeSet } from '../tls/challenges.js';
import { RELAYED_FLAGS, type FlagChange, type FromWorker, type ToWorker } from './messages.js';
import { WorkerShare } from './stats.js';

/** How long the primary waits for every worker to confirm a table (or challenges) before it goes on without. */
const ACK_TIMEOUT_MS = 5000;
/** How long a scrape waits for workers' counters; a late report is added when it comes. */
const STATS_TIMEOUT_MS = 500;
const RESTART_MIN_MS = 100;
const RESTART_MAX_MS = 10_000;
/** A worker up this long has not crashed in a loop: its next restart starts from the shortest backoff. */
const STABLE_MS = 30_000;
/** Beyond --drain-timeout, how long stopped workers may take to exit before they are killed. */
const EXIT_GRACE_MS = 3000;

export interface PoolDeps {
  config: Config;
  log: Logger;
  /** The primary's table: its version, flags and counters are what workers get and what the admin API shows. */
  table: Table;
  stats: ProxyStats;
  ticketKeys: Buffer;
  challenges: ChallengeSet;
  registry: Registry;
}

interface Slot {
  /** 1..N, the `worker` label; kept across restarts. */
  readonly n: number;
  worker: Worker | undefined;
  /** Sent init and state: it counts for acks. */
  ready: boolean;
  startedAt: number;
  backoff: number;
  restarts: number;
  timer: NodeJS.Timeout | undefined;
  /** The table version last sent to this process (0: none yet): changes since it are all it needs. */
  sent: number;
  applied: number;
  challenges: number;
  ports: number[];
  failures: Map<number, string>;
  /** Its counters as added into the primary's, over every process it had. */
  readonly share: WorkerShare;
}

export class WorkerPool implements ListenerState {
  readonly #d: PoolDeps;
  readonly #slots: Slot[] = [];
  #table: { version: number; table: RoutingTable } | undefined;
  /** The last version every worker confirmed (or that timed out): what the admin API reports. */
  #published = 0;
  readonly #certificates = new Map<string, Extract<ToWorker, { t: 'certificate' }>>();
  #challengeSeq = 0;
  #statsId = 0;
  readonly #statsWaiters = new Map<number, () => void>();
  /** Re-checked whenever a worker confirms something or exits. */
  readonly #ackWaiters = new Set<() => void>();
  #stopping = false;

  constructor(deps: PoolDeps) {
    this.#d = deps;
    // Workers accept on the shared listening socket (unless NODE_CLUSTER_SCHED_POLICY says otherwise). Node's
    // round-robin default spreads connections more evenly, but the primary then accepts every one: a new
    // connection per request costs a quarter of the throughput, and a connection handed to a worker as it
    // dies hangs until the client gives up (bench/README.md, "Workers").
    if (!process.env.NODE_CLUSTER_SCHED_POLICY) cluster.schedulingPolicy = cluster.SCHED_NONE;
    cluster.setupPrimary({ exec: fileURLToPath(new URL('./worker.js', import.meta.url)), args: [], serialization: 'advanced' });
    deps.table.on('health', (b, flag, value) => {
      if (!(RELAYED_FLAGS as readonly string[]).includes(flag)) return;
      this.#broadcast({ t: 'health', route: routeKey(b.route.spec), backend: b.key, flag: flag as FlagChange['flag'], value });
    });
    deps.challenges.onChange((snapshot) => this.#broadcast({ t: 'challenges', seq: ++this.#challengeSeq, snapshot }));
    this.#metrics(deps.registry);
    // The primary going (a second signal, a crash) takes its workers along rather than leaving them to drain alone.
    process.once('exit', () => {
      for (const s of this.#slots) if (s.worker && !s.worker.isDead()) s.worker.process.kill('SIGKILL');
    });
    for (let n = 1; n <= deps.config.workers; n++) {
      const slot: Slot = { n, worker: undefined, ready: false, startedAt: 0, backoff: RESTART_MIN_MS, restarts: 0, timer: undefined, sent: 0, applied: 0, challenges: 0, ports: [], failures: new Map(), share: new WorkerShare() };
      this.#slots.push(slot);
      this.#fork(slot);
    }
  }

  get version(): number {
    return this.#published;
  }

  /** Ports every worker that serves a table listens on. */
  get ports(): number[] {
    const up = this.#slots.filter((s) => s.ready && s.applied > 0);
    if (up.length === 0) return [];
    return up[0]!.ports.filter((p) => up.every((s) => s.ports.includes(p)));
  }

  get failures(): Map<number, string> {
    const all = new Map<number, string>();
    for (const s of this.#slots) if (s.ready) for (const [p, why] of s.failures) if (!all.has(p)) all.set(p, why);
    return all;
  }

  /**
   * Sends the primary's table (just applied; `changes` from the one before) to
   * every worker: the changed routes to a worker that has the table before,
   * the whole table to one that has not. Resolves once all have it serving,
   * or after a timeout.
   */
  async publish(next: RoutingTable, changes: RouteChanges): Promise<void> {
    const version = this.#d.table.version;
    const before = this.#table;
    this.#table = { version, table: next };
    let routes: ToWorker | undefined;
    let whole: ToWorker | undefined;
    for (const s of this.#slots) {
      if (!s.ready) continue;
      if (before && s.sent === before.version) this.#send(s, routes ??= this.#routesMessage(before, changes));
      else this.#send(s, whole ??= this.#tableMessage());
      s.sent = version;
    }
    if (!(await this.#until((s) => s.applied >= version))) {
      const late = this.#live().filter((s) => s.applied < version).map((s) => s.n);
      this.#d.log.warn({ version, workers: late, waited: ACK_TIMEOUT_MS }, 'workers did not confirm the routing table in time; reporting it anyway');
    }
    this.#published = Math.max(this.#published, version);
  }

  /** The peer stream's ACME duties, widened to the workers: certificates go to them too, and challenges must reach them before validation. */
  acmePeers(peers: AcmePeers | undefined): AcmePeers {
    return {
      certificate: (names, certPem, keyPem) => {
        peers?.certificate(names, certPem, keyPem);
        const m: ToWorker = { t: 'certificate', names, certPem, keyPem };
        this.#certificates.set(names.join(','), m);
        this.#broadcast(m);
      },
      propagate: async () => {
        const seq = this.#challengeSeq;
        const [, inTime] = await Promise.all([peers?.propagate(), this.#until((s) => s.challenges >= seq)]);
        if (!inTime) this.#d.log.warn({ waited: ACK_TIMEOUT_MS }, 'workers did not confirm the ACME challenges in time');
      },
    };
  }

  /** Asks every worker for its counters' increments; each report is added into the primary's table and stats as it comes. */
  async collect(): Promise<void> {
    const asked = this.#slots.filter((s) => s.ready);
    await Promise.all(asked.map((s) => new Promise<void>((resolve) => {
      const id = ++this.#statsId;
      const done = () => {
        clearTimeout(timer);
        this.#statsWaiters.delete(id);
        resolve();
      };
      const timer = setTimeout(done, STATS_TIMEOUT_MS);
      this.#statsWaiters.set(id, done);
      if (!this.#send(s, { t: 'stats', id })) done();
    })));
  }

  /** Every worker stops accepting and finishes in-flight work (within --drain-timeout), then exits. */
  async stop(): Promise<void> {
    this.#stopping = true;
    const exits = this.#slots.map((s) => {
      clearTimeout(s.timer);
      const w = s.worker;
      if (!w || w.isDead()) return Promise.resolve();
      const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()));
      this.#send(s, { t: 'stop' });
      return exited;
    });
    const deadline = setTimeout(() => {
      for (const s of this.#slots) if (s.worker && !s.worker.isDead()) {
        this.#d.log.warn({ worker: s.n }, 'worker did not exit after draining; killing it');
        s.worker.process.kill('SIGKILL');
      }
    }, this.#d.config.drainTimeout + EXIT_GRACE_MS);
    await Promise.all(exits);
    clearTimeout(deadline);
  }

  #fork(slot: Slot): void {
    const w = cluster.fork();
    slot.worker = w;
    slot.ready = false;
    slot.startedAt = Date.now();
    slot.sent = 0;
    slot.applied = 0;
    slot.challenges = 0;
    // A message from a process the slot has already let go (late after its exit) counts for nothing.
    w.on('message', (m: FromWorker) => {
      if (slot.worker === w) this.#onMessage(slot, m);
    });
    w.on('error', (err) => this.#d.log.warn({ worker: slot.n, err: err.message }, 'worker channel error'));
    w.once('exit', (code, signal) => this.#onExit(slot, w, code, signal));
  }

  #onMessage(slot: Slot, m: FromWorker): void {
    switch (m.t) {
      case 'ready': {
        const { config, log } = this.#d;
        this.#send(slot, { t: 'init', config, worker: slot.n, ticketKeys: this.#d.ticketKeys });
        for (const c of this.#certificates.values()) this.#send(slot, c);
        this.#send(slot, { t: 'challenges', seq: this.#challengeSeq, snapshot: this.#d.challenges.snapshot() });
        if (this.#table) this.#sendTable(slot);
        slot.ready = true;
        log.debug({ worker: slot.n, pid: slot.worker?.process.pid }, 'worker started');
        return;
      }
      case 'applied':
        slot.applied = m.version;
        slot.ports = m.ports;
        slot.failures = m.failures;
        return this.#acked();
      case 'challenges':
        slot.challenges = m.seq;
        return this.#acked();
      case 'resync':
        this.#d.log.warn({ worker: slot.n, has: m.version, sent: slot.sent }, 'worker is out of step with the routing table; sending it whole');
        return void (this.#table && this.#sendTable(slot));
      case 'health':
        // Into the primary's table: its 'health' event sends it on to every worker, and an ejection gets the prober's fast checks.
        return void this.#d.table.routes.get(m.route)?.backends.get(m.backend)?.setFlag(m.flag, m.value);
      case 'stats':
        slot.share.add(this.#d.table, this.#d.stats, m.report, m.last);
        if (m.last) this.#statsWaiters.get(m.id)?.();
        return;
    }
  }

  #onExit(slot: Slot, w: Worker, code: number | null, signal: string | null): void {
    if (slot.worker !== w) return;
    slot.share.release(this.#d.stats);
    slot.worker = undefined;
    slot.ready = false;
    slot.ports = [];
    slot.failures = new Map();
    this.#acked();
    if (this.#stopping) return;
    if (Date.now() - slot.startedAt > STABLE_MS) slot.backoff = RESTART_MIN_MS;
    const delay = slot.backoff;
    slot.backoff = Math.min(RESTART_MAX_MS, slot.backoff * 2);
    slot.restarts++;
    this.#d.log.error({ worker: slot.n, pid: w.process.pid, code, signal, restartIn: delay }, 'worker exited; restarting it');
    slot.timer = setTimeout(() => {
      if (!this.#stopping) this.#fork(slot);
    }, delay);
  }

  #sendTable(slot: Slot): void {
    this.#send(slot, this.#tableMessage());
    slot.sent = this.#table!.version;
  }

  #tableMessage(): ToWorker {
    const { version, table } = this.#table!;
    return { t: 'table', version, table, flags: this.#flags(this.#d.table.routes.values()) };
  }

  /** The routes that changed since `before`, for workers that have it. */
  #routesMessage(before: { version: number; table: RoutingTable }, changes: RouteChanges): ToWorker {
    const { version, table } = this.#table!;
    const routes: Route[] = [];
    const removed: string[] = [];
    for (const [key, spec] of changes) {
      const route = spec && this.#d.table.routes.get(key);
      if (route) routes.push(route);
      else removed.push(key);
    }
    return {
      t: 'routes', version, base: before.version, routes: routes.map((r) => r.spec), removed,
      notices: table.notices === before.table.notices ? undefined : table.notices, tls: table.tls, flags: this.#flags(routes),
    };
  }

  /** Every backend's relayed flags as the primary has them. */
  #flags(routes: Iterable<Route>): FlagChange[] {
    const flags: FlagChange[] = [];
    for (const r of routes) {
      const route = routeKey(r.spec);
      for (const b of r.backends.values()) for (const flag of RELAYED_FLAGS) flags.push({ route, backend: b.key, flag, value: b[flag] });
    }
    return flags;
  }

  /** Workers forked and not stopped: those a table or challenge must reach. */
  #live(): Slot[] {
    return this.#slots.filter((s) => s.worker !== undefined);
  }

  /** Resolves true once `done` holds for every live worker, false after ACK_TIMEOUT_MS. */
  #until(done: (s: Slot) => boolean): Promise<boolean> {
    return new Promise((resolve) => {
      const check = () => {
        if (!this.#live().every(done)) return;
        finish(true);
      };
      const finish = (ok: boolean) => {
        clearTimeout(timer);
        this.#ackWaiters.delete(check);
        resolve(ok);
      };
      const timer = setTimeout(() => finish(false), ACK_TIMEOUT_MS);
      this.#ackWaiters.add(check);
      check();
    });
  }

  #acked(): void {
    for (const check of [...this.#ackWaiters]) check();
  }

  #broadcast(m: ToWorker): void {
    for (const s of this.#slots) if (s.ready) this.#send(s, m);
  }

  /** False when the worker's channel is gone (it is exiting; its exit restarts it). */
  #send(slot: Slot, m: ToWorker): boolean {
    const w = slot.worker;
    if (!w?.isConnected()) return false;
    w.send(m);
    return true;
  }

  #metrics(registry: Registry): void {
    const slots = this.#slots;
    const gauges: [name: string, help: string, value: (s: Slot) => number][] = [
      ['meshd_worker_up', '1 while a worker process serves, per worker.', (s) => (s.ready ? 1 : 0)],
      ['meshd_worker_client_connections', 'Open client connections, per worker.', (s) => s.share.connections],
      ['meshd_worker_in_flight', 'In-flight requests (L7) and open connections (L4) to backends, per worker.', (s) => s.share.inFlight],
      ['meshd_worker_resident_memory_bytes', 'Resident memory, per worker.', (s) => s.share.rss],
    ];
    for (const [name, help, value] of gauges) {
      new Gauge({
        name, help, labelNames: ['worker'], registers: [registry],
        collect() {
          for (const s of slots) this.set({ worker: String(s.n) }, value(s));
        },
      });
    }
    new Counter({
      name: 'meshd_worker_requests_total', help: 'Requests (L7) or connections (L4) sent to backends, per worker: how evenly the kernel or the primary spreads clients.', labelNames: ['worker'], registers: [registry],
      collect() {
        this.reset();
        for (const s of slots) this.inc({ worker: String(s.n) }, s.share.requests);
      },
    });
    new Counter({
      name: 'meshd_worker_restarts_total', help: 'Workers restarted after they exited, per worker.', labelNames: ['worker'], registers: [registry],
      collect() {
        this.reset();
        for (const s of slots) this.inc({ worker: String(s.n) }, s.restarts);
      },
    });
  }
}
