// The live table: per published port, the routes and their backends with health
// state and counters. A new routing table is applied as a diff, so backends that
// stay keep their state; removed ones drain. Picks follow the route's policy
// (balance.ts) over the backends that every health source agrees on; on L7
// ports a request finds its route by host, then by longest path prefix.
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createBalancer, type Balancer } from './balance.js';
import { RouteLatency } from './latency.js';
import { routeKey, sameData, type BackendSpec, type Mode, type Notice, type RouteChanges, type RouteSpec, type RoutingTable, type TlsFiles } from './spec.js';

/** Something a backend holds open (an upstream pool, a piped socket) and must close when retired. */
export interface Closable {
  close(): void;
  destroy(): void;
}

export class Backend {
  readonly key: string;
  readonly id: string;
  readonly host: string;
  readonly port: number;
  node: string | undefined;
  route: Route;

  // Health sources: each owns one flag; eligible only when all agree.
  /**
   * Not yet seen answering a probe from this node. A swarm task counts as
   * running before its process listens, and before every node has learned its
   * overlay address; its first probe (sent at once) proves it reachable.
   */
  pending = true;
  /** Task desired state is shutdown (from discovery). */
  draining = false;
  /** Gone from the routing table; finishing in-flight work. */
  removed = false;
  /** Failed `fall` active probes in a row (prober). */
  activeDown = false;
  /** Taken out by the proxy after connect failures or resets (outlier). */
  ejected = false;
  /** Its container died or turned unhealthy (engine events); tasks never come back. */
  failed = false;

  // Counters
  active = 0;
  requests = 0;
  failures = 0;
  readonly errors = new Map<string, number>();
  consecutiveFailures = 0;

  // Probe state (prober)
  okStreak = 0;
  failStreak = 0;
  lastProbeError: string | undefined;

  #stickyId: string | undefined;

  /** Per-backend upstream resources, opened by the proxy. */
  readonly resources = new Set<Closable>();
  /** L7 upstream pool; created by the proxy on first use. */
  pool: Closable | undefined;
  #drainTimer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(spec: BackendSpec, route: Route) {
    this.key = backendKey(spec);
    this.id = spec.id;
    this.host = spec.host;
    this.port = spec.port;
    this.node = spec.node;
    this.draining = spec.draining;
    this.route = route;
  }

  get eligible(): boolean {
    return !this.pending && !this.draining && !this.removed && !this.activeDown && !this.ejected && !this.failed;
  }

  get healthy(): boolean {
    return !this.pending && !this.activeDown && !this.ejected && !this.failed;
  }

  /**
   * Between states, so probed at the fast interval: awaiting its first pass,
   * ejected by traffic, or part way to `fall`; once down, part way to `rise`.
   */
  get settling(): boolean {
    return this.activeDown ? this.okStreak > 0 : this.pending || this.ejected || this.failStreak > 0;
  }

  /** Changes one health flag and lets the route recompute its picks. */
  setFlag(flag: 'pending' | 'draining' | 'activeDown' | 'ejected' | 'failed', value: boolean): void {
    if (this[flag] === value) return;
    this[flag] = value;
    this.route.refresh();
    this.route.table.emit('health', this, flag, value);
  }

  /**
   * What a sticky cookie holds for this backend: a digest of its task ID, the
   * same on every node, that does not reveal its address.
   */
  get stickyId(): string {
    return this.#stickyId ??= createHash('sha256').update(this.id).digest('base64url').slice(0, 16);
  }

  /** One more request or connection in flight. */
  acquire(): void {
    this.requests++;
    this.active++;
    this.route.balancer.moved(this);
  }

  countError(code: string): void {
    this.failures++;
    this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
  }

  /** Called when one in-flight request or connection is done. */
  release(): void {
    this.active--;
    this.route.balancer.moved(this);
    if (this.removed && this.active <= 0) this.close();
  }

  retire(drainTimeout: number): void {
    if (this.removed) return;
    this.removed = true;
    if (this.active <= 0) return this.close();
    this.route.retiring.set(this.key, this);
    this.#drainTimer = setTimeout(() => this.close(true), drainTimeout);
    this.#drainTimer.unref();
  }

  /**
   * Back in the table while still draining (a routes file edited back, a task
   * seen again): the same backend serves on, its open connections are kept
   * and its drain deadline is off. False when it has already closed.
   */
  revive(): boolean {
    if (!this.removed || this.#closed) return false;
    clearTimeout(this.#drainTimer);
    this.route.retiring.delete(this.key);
    this.removed = false;
    return true;
  }

  close(force = false): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.removed) {
      const closed = this.route.closed;
      closed.requests += this.requests;
      for (const [code, n] of this.errors) closed.errors.set(code, (closed.errors.get(code) ?? 0) + n);
    }
    if (this.route.retiring.get(this.key) === this) this.route.retiring.delete(this.key);
    clearTimeout(this.#drainTimer);
    for (const r of this.resources) force ? r.destroy() : r.close();
    this.resources.clear();
    if (this.pool) force ? this.pool.destroy() : this.pool.close();
    this.pool = undefined;
  }
}

function backendKey(spec: BackendSpec): string {
  return `${spec.id}@${spec.host}:${spec.port}`;
}

export class Route {
  spec: RouteSpec;
  readonly table: Table;
  readonly backends = new Map<string, Backend>();
  /** Removed backends still finishing in-flight work, by key, so one that comes back is revived. */
  readonly retiring = new Map<string, Backend>();
  /** What removed backends had counted once they closed, so counters summed per route never go down. */
  readonly closed = { requests: 0, errors: new Map<string, number>() };
  /** Eligible backends in a stable order; rebuilt only when a flag changes. */
  #eligible: Backend[] = [];
  balancer: Balancer<Backend>;
  /** Sticky routes: eligible backends by the id their cookie holds. */
  #bySticky: Map<string, Backend> | undefined;
  /** L7 request durations. */
  readonly latency = new RouteLatency();
  /** Client connections (L4) or in-flight requests (L7) held by this route; counted only when it has a limit. */
  held = 0;

  constructor(spec: RouteSpec, table: Table) {
    this.spec = spec;
    this.table = table;
    this.balancer = createBalancer(spec.lb);
  }

  /** A new spec for the same route; a changed policy starts afresh. */
  update(spec: RouteSpec): void {
    if (spec.lb !== this.spec.lb) this.balancer = createBalancer(spec.lb);
    this.spec = spec;
  }

  get eligibleCount(): number {
    return this.#eligible.length;
  }

  refresh(): void {
    const all = [...this.backends.values()];
    this.#eligible = all.filter((b) => b.eligible);
    this.balancer.reset(this.#eligible, all);
    this.#bySticky = this.spec.sticky ? new Map(this.#eligible.map((b) => [b.stickyId, b])) : undefined;
  }

  /**
   * The backend for a request or connection, other than `avoid` when another
   * exists: the one a sticky cookie names while it is eligible, else the policy's.
   */
  pick(avoid?: Backend, ip?: string, sticky?: string): Backend | undefined {
    if (sticky !== undefined) {
      const b = this.#bySticky?.get(sticky);
      if (b && b !== avoid) return b;
    }
    return this.balancer.pick(avoid, ip);
  }
}

/** The path part of a request target: origin-form up to its query; an absolute-form URL's path; `/` for anything else. */
function targetPath(target: string): string {
  if (target.charCodeAt(0) === 47 /* / */) {
    const q = target.indexOf('?');
    return q < 0 ? target : target.slice(0, q);
  }
  try {
    return new URL(target).pathname;
  } catch {
    return '/';
  }
}

/** The routes of one host (or of any host) on an L7 port: by path prefix, and the one without paths. */
export class HostRoutes {
  readonly #byPrefix = new Map<string, Route>();
  /** The route without paths: every request no prefix claims. */
  fallback: Route | undefined;

  add(route: Route): void {
    if (!route.spec.paths?.length) this.fallback = route;
    else for (const p of route.spec.paths) this.#byPrefix.set(p, route);
  }

  /** The route of the longest prefix, whole segments only (`/api` takes /api and /api/x, not /apix): O(depth). */
  match(target: string): Route | undefined {
    if (this.#byPrefix.size === 0) return this.fallback;
    let path = targetPath(target);
    for (;;) {
      const route = this.#byPrefix.get(path);
      if (route) return route;
      if (path.length <= 1) return this.fallback;
      const slash = path.lastIndexOf('/');
      path = slash <= 0 ? '/' : path.slice(0, slash);
    }
  }
}

/**
 * A strip-prefix route's target for its backend, with the prefix removed (the
 * longest of its prefixes the request falls under), and that prefix; undefined
 * when nothing is stripped. `/api/x?q` → `/x?q`, `/api` → `/`.
 */
export function strippedTarget(route: Route, target: string): [string, string] | undefined {
  if (!route.spec.stripPrefix) return undefined;
  let originForm = target;
  if (target.charCodeAt(0) !== 47 /* / */) {
    try {
      const u = new URL(target);
      originForm = u.pathname + u.search;
    } catch {
      return undefined;
    }
  }
  const path = targetPath(originForm);
  let best: string | undefined;
  for (const p of route.spec.paths ?? []) {
    const hit = p !== '/' && (path === p || path.startsWith(`${p}/`));
    if (hit && (best === undefined || p.length > best.length)) best = p;
  }
  if (best === undefined) return undefined;
  const rest = originForm.slice(best.length);
  return [rest.charCodeAt(0) === 47 ? rest : `/${rest}`, best];
}

/** What a listener on one published port serves. */
export interface PortEntry {
  port: number;
  mode: Mode;
  /** L7: routes by lower-case host. */
  byHost: Map<string, HostRoutes>;
  /** L7: routes without hosts, for any host the others leave. */
  anyHost: HostRoutes | undefined;
  /** L4: the port's one route (also the L7 route without hosts and paths). */
  default: Route | undefined;
  /** Some route on it forwards over h2c: plain connections may open with the HTTP/2 preface. */
  h2c: boolean;
}

/** The table's routes by port, then name: a plain comparison, as localeCompare over 10,000 routes costs more than what the admin side does with them. */
export function routesByPortName(table: Table): Route[] {
  return [...table.routes.values()].sort((a, b) => a.spec.port - b.spec.port || (a.spec.name < b.spec.name ? -1 : a.spec.name > b.spec.name ? 1 : 0));
}

/** The route of an L7 request: its host's routes, then those for any host; undefined when none claims it. */
export function routeOf(entry: PortEntry, host: string | undefined, target: string): Route | undefined {
  const own = host === undefined ? undefined : entry.byHost.get(host);
  return own?.match(target) ?? entry.anyHost?.match(target);
}

export interface TableEvents {
  applied: [];
  health: [Backend, string, boolean];
}

export class Table extends EventEmitter<TableEvents> {
  readonly routes = new Map<string, Route>();
  readonly ports = new Map<number, PortEntry>();
  /** The routes on each port, to rebuild one port's entry. */
  readonly #byPort = new Map<number, Set<Route>>();
  notices: Notice[] = [];
  #tls: TlsFiles | undefined;
  version = 0;
  loaded = false;
  readonly #drainTimeout: number;

  constructor(options: { drainTimeout: number }) {
    super();
    this.#drainTimeout = options.drainTimeout;
  }

  /**
   * Applies a compiled table; returns false when it equals the current one.
   * `changes` says which routes differ from the table applied last, when the
   * caller knows (the incremental compiler): then the work is in proportion
   * to them. Without it they are found by comparing each route's spec.
   */
  apply(next: RoutingTable, changes: RouteChanges = this.diff(next.routes)): boolean {
    return this.change(changes, next.notices, next.tls);
  }

  /** Applies the routes that changed, with the whole table's notices and certificate files; false when nothing differs. */
  change(changes: RouteChanges, notices: Notice[], tls: TlsFiles | undefined): boolean {
    const noticesChanged = notices !== this.notices && !sameData(notices, this.notices);
    if (this.loaded && !changes.size && !noticesChanged && sameData(tls, this.#tls)) return false;
    this.loaded = true;
    this.version++;
    this.notices = notices;
    this.#tls = tls;

    const ports = new Set<number>();
    for (const [key, spec] of changes) {
      let route = this.routes.get(key);
      if (!spec) {
        if (!route) continue;
        for (const b of route.backends.values()) b.retire(this.#drainTimeout);
        route.backends.clear();
        route.refresh();
        this.routes.delete(key);
        this.#byPort.get(route.spec.port)!.delete(route);
        ports.add(route.spec.port);
        continue;
      }
      if (!route) {
        route = new Route(spec, this);
        this.routes.set(key, route);
        let onPort = this.#byPort.get(spec.port);
        if (!onPort) this.#byPort.set(spec.port, (onPort = new Set()));
        onPort.add(route);
        ports.add(spec.port);
      } else if (!samePlace(route.spec, spec)) {
        ports.add(spec.port);
      }
      route.update(spec);
      this.#applyBackends(route, spec.backends);
    }
    for (const port of ports) {
      const routes = this.#byPort.get(port)!;
      if (routes.size) this.ports.set(port, portEntry(port, routes));
      else {
        this.ports.delete(port);
        this.#byPort.delete(port);
      }
    }
    this.emit('applied');
    return true;
  }

  /** The routes that differ from the current ones; the last of several with one key counts. */
  diff(routes: RouteSpec[]): RouteChanges {
    const changes: RouteChanges = new Map();
    const seen = new Set<string>();
    for (const spec of routes) {
      const key = routeKey(spec);
      seen.add(key);
      const current = this.routes.get(key)?.spec;
      if (current && sameData(current, spec)) changes.delete(key);
      else changes.set(key, spec);
    }
    for (const key of this.routes.keys()) if (!seen.has(key)) changes.set(key, undefined);
    return changes;
  }

  #applyBackends(route: Route, specs: BackendSpec[]): void {
    const keep = new Set<string>();
    for (const spec of specs) {
      const key = backendKey(spec);
      keep.add(key);
      let existing = route.backends.get(key);
      const back = existing ? undefined : route.retiring.get(key);
      if (back?.revive()) route.backends.set(key, (existing = back));
      if (existing) {
        existing.node = spec.node;
        existing.draining = spec.draining;
      } else {
        route.backends.set(key, new Backend(spec, route));
      }
    }
    for (const [key, b] of route.backends) {
      if (keep.has(key)) continue;
      route.backends.delete(key);
      b.retire(this.#drainTimeout);
    }
    route.refresh();
  }

  /** Takes a task out of every route at once (its container died); returns how many backends it had. */
  markTaskFailed(taskId: string): number {
    let n = 0;
    for (const b of this.allBackends()) {
      if (b.id !== taskId) continue;
      b.setFlag('failed', true);
      n++;
    }
    return n;
  }

  /** Every live backend, for probes and metrics. */
  *allBackends(): Generator<Backend> {
    for (const route of this.routes.values()) yield* route.backends.values();
  }

  /** Retires every backend, e.g. on shutdown; resolves once all closed or after the drain timeout. */
  close(): void {
    for (const b of this.allBackends()) b.retire(this.#drainTimeout);
  }
}

/** Whether two specs of one route put it in the same place on its port's listener. */
function samePlace(a: RouteSpec, b: RouteSpec): boolean {
  return a.mode === b.mode && a.backend === b.backend && sameData(a.hosts, b.hosts) && sameData(a.paths, b.paths);
}

function portEntry(port: number, routes: Iterable<Route>): PortEntry {
  let entry: PortEntry | undefined;
  for (const route of routes) {
    const { mode, hosts } = route.spec;
    entry ??= { port, mode, byHost: new Map(), anyHost: undefined, default: undefined, h2c: false };
    if (route.spec.backend === 'h2c') entry.h2c = true;
    if (hosts.length === 0) {
      (entry.anyHost ??= new HostRoutes()).add(route);
      if (!route.spec.paths?.length) entry.default = route;
    }
    for (const h of hosts) {
      let own = entry.byHost.get(h);
      if (!own) entry.byHost.set(h, (own = new HostRoutes()));
      own.add(route);
    }
  }
  return entry!;
}
