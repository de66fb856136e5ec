// What the dashboard shows: the live table with health, in-flight work and
// rates, as one plain object. Rates come from counter deltas between samples
// taken once a second, so every viewer sees the same numbers.
import type { Mode } from '../table/spec.js';
import type { ListenerState } from '../proxy/listeners.js';
import { routesByPortName, type Backend, type Route, type Table } from '../table/table.js';

export type BackendState = 'active' | 'pending' | 'draining' | 'out';

export interface BackendView {
  key: string;
  id: string;
  address: string;
  node: string | null;
  state: BackendState;
  probe: 'up' | 'down' | 'pending';
  ejected: boolean;
  failed: boolean;
  lastProbeError: string | null;
  /** In-flight requests (L7) or open connections (L4). */
  active: number;
  requests: number;
  failures: number;
  /** Per second over the rate window; null until two samples include this backend. */
  rate: number | null;
  errorRate: number | null;
}

export interface RouteView {
  key: string;
  name: string;
  port: number;
  mode: Mode;
  hosts: string[];
  /** Path prefixes within the hosts; empty: every path. */
  paths: string[];
  stripPrefix: boolean;
  lb: string;
  /** Sticky cookie name, when the route has one. */
  sticky: string | null;
  /** Compatibility labels it was made from. */
  from: string[];
  check: string;
  health: { interval: number; timeout: number; rise: number; fall: number };
  proxyProtocol: boolean;
  maxConnections: number | null;
  listening: boolean;
  listenError: string | null;
  problems: string[];
  eligible: number;
  active: number;
  rate: number | null;
  errorRate: number | null;
  backends: BackendView[];
}

/** Which meshd this is: the dashboard header. */
export interface InstanceView {
  hostname: string;
  provider: 'file' | 'swarm';
  role: 'file' | 'manager' | 'worker';
  /** On a worker, the manager instance it follows, while it follows one. */
  following: string | null;
}

export interface DashboardView {
  version: number;
  loaded: boolean;
  discoveryError: string | null;
  /** Whether the admin API asks for a token, so the page offers to sign out. */
  auth: boolean;
  instance: InstanceView | null;
  rateWindow: number;
  /** The routes shown: all of them, or in a large table those that need attention first, up to VIEW_MAX_BACKENDS backends. */
  routes: RouteView[];
  /** The whole table, shown or not. */
  totals: { routes: number; backends: number; activeBackends: number; routesDown: number; hiddenRoutes: number; hiddenNotices: number };
  notices: { service: string; port: number | null; message: string }[];
}

/** The data of one `snapshot` event: the view and the server time it was sent (ms since the epoch). */
export interface SnapshotEvent {
  time: number;
  view: DashboardView;
}

export const RATE_WINDOW_MS = 5000;

interface Sample {
  time: number;
  counts: Map<Backend, readonly [requests: number, failures: number]>;
}

/** Per-backend request and error rates over the last few seconds. */
export class RateWindow {
  readonly #samples: Sample[] = [];
  #rates = new Map<Backend, readonly [rate: number, errorRate: number]>();

  constructor(readonly windowMs = RATE_WINDOW_MS) {}

  /** Records the counters now and recomputes every rate. */
  sample(table: Table, now: number): void {
    const counts = new Map<Backend, readonly [number, number]>();
    for (const b of table.allBackends()) counts.set(b, [b.requests, b.failures]);
    this.#samples.push({ time: now, counts });
    // Keep the newest sample at least a window old, so a rate always spans the whole window once it can.
    while (this.#samples.length > 2 && this.#samples[1]!.time <= now - this.windowMs) this.#samples.shift();
    const rates = new Map<Backend, readonly [number, number]>();
    for (const [b, [requests, failures]] of counts) {
      const first = this.#samples.find((s) => s !== this.#samples.at(-1) && s.counts.has(b));
      if (!first) continue;
      const [r0, f0] = first.counts.get(b)!;
      const seconds = (now - first.time) / 1000;
      rates.set(b, [round((requests - r0) / seconds), round((failures - f0) / seconds)]);
    }
    this.#rates = rates;
  }

  /** Forgets every sample, e.g. when nobody watches any more. */
  clear(): void {
    this.#samples.length = 0;
    this.#rates.clear();
  }

  of(b: Backend): readonly [number, number] | undefined {
    return this.#rates.get(b);
  }
}

/** One decimal: enough for an operator, and it keeps an idle table's snapshot unchanged between ticks. */
const round = (n: number) => Math.round(n * 10) / 10;

function stateOf(b: Backend): BackendState {
  if (b.draining) return 'draining';
  if (b.eligible) return 'active';
  if (b.pending && !b.activeDown && !b.ejected && !b.failed) return 'pending';
  return 'out';
}

function sum(values: (number | null)[]): number | null {
  const known = values.filter((v): v is number => v !== null);
  return known.length ? round(known.reduce((a, b) => a + b, 0)) : null;
}

export interface ViewSources {
  table: Table;
  /** The table version the proxies serve. */
  version: number;
  listeners: ListenerState;
  rates: RateWindow;
  discoveryError: () => string | undefined;
  instance: (() => InstanceView) | undefined;
  auth: boolean;
}

/**
 * Most backends one view carries. A page with tens of thousands of cards helps
 * nobody, and building and sending it every second would cost the proxy: a
 * larger table is shown as its routes that need attention (a backend out,
 * problems, a port not listening), then the others, up to this many backends.
 */
export const VIEW_MAX_BACKENDS = 2000;
const VIEW_MAX_NOTICES = 200;

function needsAttention(r: Route, s: ViewSources): boolean {
  return r.eligibleCount < r.backends.size || r.spec.problems.length > 0 || s.listeners.failures.has(r.spec.port);
}

/** The routes a view shows, in port and name order. */
function shownRoutes(s: ViewSources, all: Route[], backends: number): Route[] {
  if (backends <= VIEW_MAX_BACKENDS) return all;
  const shown = new Set<Route>();
  let room = VIEW_MAX_BACKENDS;
  for (const first of [true, false]) {
    for (const r of all) {
      if (needsAttention(r, s) !== first || r.backends.size > room) continue;
      shown.add(r);
      room -= r.backends.size;
    }
  }
  return all.filter((r) => shown.has(r));
}

export function buildView(s: ViewSources): DashboardView {
  const all = routesByPortName(s.table);
  let backendCount = 0;
  let activeBackends = 0;
  let routesDown = 0;
  for (const r of all) {
    backendCount += r.backends.size;
    activeBackends += r.eligibleCount;
    if (r.eligibleCount === 0) routesDown++;
  }
  const shown = shownRoutes(s, all, backendCount);
  const routes = shown.map((r): RouteView => {
    const backends = [...r.backends.values()].map((b): BackendView => {
      const rates = s.rates.of(b);
      return {
        key: b.key,
        id: b.id,
        address: `${b.host}:${b.port}`,
        node: b.node ?? null,
        state: stateOf(b),
        probe: b.activeDown ? 'down' : b.pending ? 'pending' : 'up',
        ejected: b.ejected,
        failed: b.failed,
        lastProbeError: b.lastProbeError ?? null,
        active: b.active,
        requests: b.requests,
        failures: b.failures,
        rate: rates?.[0] ?? null,
        errorRate: rates?.[1] ?? null,
      };
    });
    const { spec } = r;
    return {
      key: `${spec.port} ${spec.name}`,
      name: spec.name,
      port: spec.port,
      mode: spec.mode,
      hosts: spec.hosts,
      paths: spec.paths ?? [],
      stripPrefix: spec.stripPrefix === true,
      lb: spec.lb ?? 'round-robin',
      sticky: spec.sticky?.cookie ?? null,
      from: spec.from ?? [],
      check: spec.health.path ? `GET ${spec.health.path}` : 'TCP connect',
      health: { interval: spec.health.interval, timeout: spec.health.timeout, rise: spec.health.rise, fall: spec.health.fall },
      proxyProtocol: spec.proxyProtocol,
      maxConnections: spec.maxConnections ?? null,
      listening: s.listeners.ports.includes(spec.port),
      listenError: s.listeners.failures.get(spec.port) ?? null,
      problems: spec.problems,
      eligible: r.eligibleCount,
      active: backends.reduce((n, b) => n + b.active, 0),
      rate: sum(backends.map((b) => b.rate)),
      errorRate: sum(backends.map((b) => b.errorRate)),
      backends,
    };
  });
  const notices = s.table.notices;
  return {
    version: s.version,
    loaded: s.table.loaded,
    discoveryError: s.discoveryError() ?? null,
    auth: s.auth,
    instance: s.instance?.() ?? null,
    rateWindow: s.rates.windowMs,
    routes,
    totals: { routes: all.length, backends: backendCount, activeBackends, routesDown, hiddenRoutes: all.length - shown.length, hiddenNotices: Math.max(0, notices.length - VIEW_MAX_NOTICES) },
    notices: notices.slice(0, VIEW_MAX_NOTICES).map((n) => ({ service: n.service, port: n.port ?? null, message: n.message })),
  };
}
