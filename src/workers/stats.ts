// Counters travel from each worker to the primary as increments: a report holds
// only what moved since that worker's previous report, so a quiet table of
// 10,000 routes costs a few bytes, and the primary adds each report once into
// its own table and ProxyStats, which /metrics, /api/routes and the dashboard
// read the way they read a single process. What a worker counted stays counted
// after it exits; its in-flight work and its connections do not.
import type { ProxyStats } from '../proxy/context.js';
import type { Histogram } from '../table/latency.js';
import { routeKey } from '../table/spec.js';
import type { Backend, Route, Table } from '../table/table.js';

interface HistogramStep {
  counts: number[];
  sum: number;
  count: number;
}

/** One backend's increments: key, requests, failures, errors by code; and its in-flight work now (a gauge, not an increment). */
type BackendStep = [key: string, requests: number, failures: number, active: number, errors: [string, number][] | undefined];

interface RouteStep {
  key: string;
  backends: BackendStep[];
  total?: HistogramStep;
  upstream?: HistogramStep;
}

export interface StatsReport {
  routes: RouteStep[];
  answered: [string, number][];
  retries: number;
  limits: [string, number][];
  handshakeFailures: [string, number][];
  /** The worker's own gauges, as they are now. */
  connections: number;
  inFlight: number;
  rss: number;
}

interface BackendSeen {
  requests: number;
  failures: number;
  active: number;
  errors: Map<string, number>;
}

interface HistogramSeen {
  counts: Float64Array;
  sum: number;
  count: number;
}

/** Increments of a counter map since `seen`, which is brought up to date. */
function mapStep<K extends string>(now: ReadonlyMap<K, number>, seen: Map<K, number>): [string, number][] {
  const out: [string, number][] = [];
  for (const [k, n] of now) {
    const d = n - (seen.get(k) ?? 0);
    if (d !== 0) {
      out.push([k, d]);
      seen.set(k, n);
    }
  }
  return out;
}

function histogramStep(h: Histogram, seen: HistogramSeen): HistogramStep | undefined {
  if (h.count === seen.count) return undefined;
  const counts = Array.from(h.counts, (n, i) => n - seen.counts[i]!);
  const step = { counts, sum: h.sum - seen.sum, count: h.count - seen.count };
  seen.counts.set(h.counts);
  seen.sum = h.sum;
  seen.count = h.count;
  return step;
}

/** Backends looked at per slice of a report: a slice holds the worker's event loop for a few ms at most. */
const SLICE_BACKENDS = 4000;

/** A worker's side: what its proxy counted since it last reported. */
export class StatsReporter {
  readonly #backends = new WeakMap<Backend, BackendSeen>();
  readonly #latency = new WeakMap<Route, { total: HistogramSeen; upstream: HistogramSeen }>();
  readonly #answered = new Map<string, number>();
  readonly #limits = new Map<string, number>();
  readonly #handshakes = new Map<string, number>();
  #retries = 0;

  /**
   * The increments since the last report, in slices: every slice but the last
   * holds routes only, and the event loop runs between slices (`yieldTo`). Each
   * slice can be added on its own, so `send` ships them as they are made.
   */
  async report(table: Table, stats: ProxyStats, send: (slice: StatsReport, last: boolean) => void, yieldTo: () => Promise<void>): Promise<void> {
    let routes: RouteStep[] = [];
    let looked = 0;
    let inFlight = 0;
    for (const r of table.routes.values()) {
      const step = this.#route(r);
      inFlight += step.inFlight;
      if (step.step) routes.push(step.step);
      looked += r.backends.size + 1;
      if (looked < SLICE_BACKENDS) continue;
      send({ ...EMPTY, routes }, false);
      routes = [];
      looked = 0;
      await yieldTo();
    }
    const retries = stats.retries - this.#retries;
    this.#retries = stats.retries;
    send({
      routes, retries,
      answered: mapStep(stats.answered, this.#answered),
      limits: mapStep(stats.limits, this.#limits),
      handshakeFailures: mapStep(stats.handshakeFailures, this.#handshakes),
      connections: stats.connections, inFlight, rss: process.memoryUsage.rss(),
    }, true);
  }

  #route(r: Route): { step: RouteStep | undefined; inFlight: number } {
    let step: RouteStep | undefined;
    let inFlight = 0;
    for (const b of r.backends.values()) {
      inFlight += b.active;
      let seen = this.#backends.get(b);
      // A backend new to this worker is reported once even with nothing counted: its in-flight gauge
      // replaces whatever the primary holds under the same key from an earlier object.
      const first = !seen;
      if (!seen) this.#backends.set(b, (seen = { requests: 0, failures: 0, active: 0, errors: new Map() }));
      const errors = b.errors.size ? mapStep(b.errors, seen.errors) : undefined;
      if (!first && b.requests === seen.requests && b.failures === seen.failures && b.active === seen.active && !errors?.length) continue;
      (step ??= { key: routeKey(r.spec), backends: [] }).backends.push([b.key, b.requests - seen.requests, b.failures - seen.failures, b.active, errors?.length ? errors : undefined]);
      seen.requests = b.requests;
      seen.failures = b.failures;
      seen.active = b.active;
    }
    if (r.spec.mode !== 'tcp') {
      let seen = this.#latency.get(r);
      if (!seen) this.#latency.set(r, (seen = { total: emptySeen(r.latency.total), upstream: emptySeen(r.latency.upstream) }));
      const total = histogramStep(r.latency.total, seen.total);
      const upstream = histogramStep(r.latency.upstream, seen.upstream);
      if (total || upstream) Object.assign((step ??= { key: routeKey(r.spec), backends: [] }), total && { total }, upstream && { upstream });
    }
    return { step, inFlight };
  }
}

/** A slice with routes only; the gauges ride on the last slice. */
const EMPTY: Omit<StatsReport, 'routes'> = { answered: [], retries: 0, limits: [], handshakeFailures: [], connections: 0, inFlight: 0, rss: 0 };

const emptySeen = (h: Histogram): HistogramSeen => ({ counts: new Float64Array(h.counts.length), sum: 0, count: 0 });

function addMap<K extends string>(into: Map<K, number>, steps: [string, number][]): void {
  for (const [k, d] of steps) into.set(k as K, (into.get(k as K) ?? 0) + d);
}

function addHistogram(h: Histogram, step: HistogramStep | undefined): void {
  if (!step) return;
  for (let i = 0; i < h.counts.length; i++) h.counts[i]! += step.counts[i] ?? 0;
  h.sum += step.sum;
  h.count += step.count;
}

/** The primary's side of one worker: what it holds in flight, to take back out when it exits. */
export class WorkerShare {
  /** The worker's in-flight work by the primary's backend, as last reported; zeros are dropped. */
  readonly #active = new Map<Backend, number>();
  /** Requests (L7) or connections (L4) this worker slot sent, over every process it had. */
  requests = 0;
  connections = 0;
  inFlight = 0;
  rss = 0;

  /** Adds a slice of a report into the primary's table and ProxyStats; the last slice also sets the worker's gauges. Routes and backends the table no longer has are skipped. */
  add(table: Table, stats: ProxyStats, report: StatsReport, last: boolean): void {
    for (const step of report.routes) {
      const r = table.routes.get(step.key);
      if (!r) continue;
      for (const [key, requests, failures, active, errors] of step.backends) {
        this.requests += requests;
        const b = r.backends.get(key);
        if (!b) continue;
        b.requests += requests;
        b.failures += failures;
        if (errors) addMap(b.errors, errors);
        const held = this.#active.get(b) ?? 0;
        if (active !== held) {
          b.active += active - held;
          if (active === 0) this.#active.delete(b);
          else this.#active.set(b, active);
        }
      }
      addHistogram(r.latency.total, step.total);
      addHistogram(r.latency.upstream, step.upstream);
    }
    addMap(stats.answered, report.answered);
    addMap(stats.limits, report.limits);
    addMap(stats.handshakeFailures, report.handshakeFailures);
    stats.retries += report.retries;
    if (!last) return;
    stats.connections += report.connections - this.connections;
    this.connections = report.connections;
    this.inFlight = report.inFlight;
    this.rss = report.rss;
    // A backend that left the table is no longer reported: what this worker held there is taken back, so a
    // backend kept to drain can close, and one that comes back under its key starts from what is reported then.
    for (const [b, held] of this.#active) {
      if (table.routes.get(routeKey(b.route.spec))?.backends.get(b.key) === b) continue;
      b.active -= held;
      this.#active.delete(b);
    }
  }

  /** The worker exited: its counts stay, its in-flight work and connections go. */
  release(stats: ProxyStats): void {
    for (const [b, held] of this.#active) b.active -= held;
    this.#active.clear();
    stats.connections -= this.connections;
    this.connections = 0;
    this.inFlight = 0;
    this.rss = 0;
  }
}
