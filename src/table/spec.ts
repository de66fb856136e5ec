// The routing table as compile() produces it: plain, immutable data that says
// which ports meshd serves, how, and which addresses back each route.

/** tcp pipes bytes; http proxies requests; https terminates TLS, then proxies HTTP/1.1 and HTTP/2 requests. */
export type Mode = 'tcp' | 'http' | 'https';

/** How a route picks a backend for a request (L7) or connection (L4). */
export type Balance = 'round-robin' | 'least-conn' | 'p2c' | 'source-hash';
export const BALANCES: readonly Balance[] = ['round-robin', 'least-conn', 'p2c', 'source-hash'];
/** How meshd talks to an L7 route's backends: HTTP/1.1 (default) or cleartext HTTP/2, which gRPC servers need. */
export type BackendProtocol = 'http1' | 'h2c';

export interface HealthSpec {
  /** HTTP GET path for the active probe (a gRPC call on h2c routes); TCP connect when absent. */
  path?: string;
  interval: number;
  timeout: number;
  rise: number;
  fall: number;
}

export interface BackendSpec {
  /** Stable identity across tables: the task ID, or host:port for static backends. */
  id: string;
  host: string;
  port: number;
  /** Hostname of the node that runs it, when known. */
  node?: string;
  /** Desired state changed to shutdown: no new work, in-flight work finishes. */
  draining: boolean;
}

export interface RouteSpec {
  /** Service (or static route) name. */
  name: string;
  mode: Mode;
  /** Published port meshd listens on. */
  port: number;
  /** L7 (http, https) only: Host header values this route answers; empty means any host. */
  hosts: string[];
  /** L7: path prefixes it answers within its hosts, the longest match winning; absent: every path the others leave. */
  paths?: string[];
  /** L7 with paths: the matched prefix is removed before the request is forwarded. */
  stripPrefix?: boolean;
  /** Picking policy; round-robin when absent. */
  lb?: Balance;
  /** L7: a cookie that keeps a client on one backend while it is healthy. */
  sticky?: { cookie: string };
  /** The compatibility labels or environment (Traefik, dockercloud/haproxy) this route was made from. */
  from?: string[];
  health: HealthSpec;
  backends: BackendSpec[];
  /** Send a PROXY protocol v2 header to backends (L4). */
  proxyProtocol: boolean;
  /** Client connections this route holds at once (label meshd.max-connections); unlimited when absent. */
  maxConnections?: number;
  /** L4: close a connection idle this long (label meshd.idle-timeout); --tcp-idle-timeout when absent. */
  idleTimeout?: number;
  /** http: answer every request with a 308 to https on this port (label meshd.redirect=https[:PORT]). */
  redirectHttps?: number;
  /** https: Strict-Transport-Security value added to every answer (label meshd.hsts). */
  hsts?: string;
  /** https with hosts: serve a certificate ordered over ACME for the hosts (label meshd.tls=acme, file `tls: acme`). */
  acme?: boolean;
  /** L7: h2c when backends are spoken to over cleartext HTTP/2 (label meshd.backend, file `backend`); absent means http1. */
  backend?: 'h2c';
  /** Problems found while compiling this route (bad labels, unreachable tasks). */
  problems: string[];
}

/** Something the operator should know that is not a served route. */
export interface Notice {
  service: string;
  port?: number;
  message: string;
}

export interface RoutingTable {
  routes: RouteSpec[];
  notices: Notice[];
  /** Certificates the routes file names (absolute paths); meshd's certificate store reads them. */
  tls?: TlsFiles;
}

export interface TlsFiles {
  certificates: { cert: string; key: string }[];
}

/** Defaults that labels or a routes file may override per route. */
export interface CompileDefaults {
  health: HealthSpec;
}

/** A route's identity across tables: names are unique on a port. */
export function routeKey(route: Pick<RouteSpec, 'port' | 'name'>): string {
  return `${route.port} ${route.name}`;
}

/** Routes that differ from the previous table, by routeKey: the new spec, or undefined when the route is gone. */
export type RouteChanges = Map<string, RouteSpec | undefined>;

/** Deep equality of plain JSON-like data, as JSON would see it: a key holding undefined counts as absent. */
export function sameData(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameData(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  let n = 0;
  for (const k in x) {
    if (x[k] === undefined) continue;
    n++;
    if (!sameData(x[k], y[k])) return false;
  }
  for (const k in y) if (y[k] !== undefined) n--;
  return n === 0;
}
