// File provider: routes written by hand, for running meshd without a swarm. The
// file is re-read when it changes; a bad edit keeps the last good table and is
// logged with the reason.
import fs from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { parseDuration } from '../core/duration.js';
import type { Logger } from '../core/log.js';
import { byPortName, PortClaims, routeHealth } from '../table/compile.js';
import { isBalance, MAX_ROUTE_CONNECTIONS, normalizePath, parseRedirect, parseSticky, validHsts } from '../table/labels.js';
import { BALANCES } from '../table/spec.js';
import type { BackendSpec, CompileDefaults, HealthSpec, Mode, RouteSpec, RoutingTable, TlsFiles } from '../table/spec.js';

class RoutesFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RoutesFileError';
  }
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function port(v: unknown, where: string): number {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 65535) throw new RoutesFileError(`${where}: ${JSON.stringify(v)} is not a port (1-65535)`);
  return n;
}

function duration(v: unknown, where: string): number {
  const ms = typeof v === 'number' ? v : typeof v === 'string' ? parseDuration(v) : undefined;
  if (ms === undefined || ms <= 0) throw new RoutesFileError(`${where}: ${JSON.stringify(v)} is not a duration (write it like 500ms or 2s)`);
  return ms;
}

function count(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 1000) throw new RoutesFileError(`${where}: ${JSON.stringify(v)} is not a whole number from 1 to 1000`);
  return v;
}

function connections(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_ROUTE_CONNECTIONS) throw new RoutesFileError(`${where}: ${JSON.stringify(v)} is not a whole number from 1 to ${MAX_ROUTE_CONNECTIONS}`);
  return v;
}

function backend(v: unknown, where: string): BackendSpec {
  if (typeof v !== 'string') throw new RoutesFileError(`${where}: must be "host:port"`);
  const m = /^(?:\[(.+)\]|([^:]+)):(\d+)$/.exec(v.trim());
  if (!m) throw new RoutesFileError(`${where}: ${JSON.stringify(v)} is not "host:port"`);
  const host = m[1] ?? m[2]!;
  const p = port(m[3], where);
  return { id: `${host}:${p}`, host, port: p, draining: false };
}

/** The health keys a route sets; routeHealth() merges them over the defaults. */
function health(v: unknown, where: string): Partial<HealthSpec> {
  if (v === undefined) return {};
  if (!isObj(v)) throw new RoutesFileError(`${where}: must be a mapping (path, interval, timeout, rise, fall)`);
  const out: Partial<HealthSpec> = {};
  for (const [k, val] of Object.entries(v)) {
    const at = `${where}.${k}`;
    if (k === 'path') {
      if (typeof val !== 'string' || !val.startsWith('/')) throw new RoutesFileError(`${at}: must be a path starting with /`);
      out.path = val;
    } else if (k === 'interval' || k === 'timeout') out[k] = duration(val, at);
    else if (k === 'rise' || k === 'fall') out[k] = count(val, at);
    else throw new RoutesFileError(`${at}: unknown key (path, interval, timeout, rise, fall)`);
  }
  return out;
}

const ROUTE_KEYS = new Set(['name', 'publish', 'mode', 'hosts', 'paths', 'stripPrefix', 'lb', 'sticky', 'backends', 'health', 'proxyProtocol', 'maxConnections', 'idleTimeout', 'redirect', 'hsts', 'tls', 'backend']);

/** `paths`, `stripPrefix`, `lb` and `sticky`: how a route matches requests and picks backends. */
function routing(r: Obj, mode: Mode, where: string): Pick<RouteSpec, 'paths' | 'stripPrefix' | 'lb' | 'sticky'> {
  const out: Pick<RouteSpec, 'paths' | 'stripPrefix' | 'lb' | 'sticky'> = {};
  if (r.paths !== undefined) {
    if (!Array.isArray(r.paths) || r.paths.length === 0) throw new RoutesFileError(`${where}.paths: must be a list of path prefixes such as /api`);
    if (mode === 'tcp') throw new RoutesFileError(`${where}.paths: only for mode http or https`);
    const paths = r.paths.map((p: unknown, j: number) => {
      const path = typeof p === 'string' ? normalizePath(p) : undefined;
      if (path === undefined) throw new RoutesFileError(`${where}.paths[${j}]: ${JSON.stringify(p)} is not a path prefix such as /api`);
      return path;
    });
    out.paths = [...new Set(paths)];
  }
  if (r.stripPrefix !== undefined) {
    if (typeof r.stripPrefix !== 'boolean') throw new RoutesFileError(`${where}.stripPrefix: must be true or false`);
    if (r.stripPrefix && !out.paths) throw new RoutesFileError(`${where}.stripPrefix: needs paths, the prefixes to strip`);
    if (r.stripPrefix) out.stripPrefix = true;
  }
  if (r.lb !== undefined) {
    if (typeof r.lb !== 'string' || !isBalance(r.lb)) throw new RoutesFileError(`${where}.lb: must be one of ${BALANCES.join(', ')}`);
    if (r.lb !== 'round-robin') out.lb = r.lb;
  }
  if (r.sticky !== undefined) {
    const cookie = typeof r.sticky === 'string' ? parseSticky(r.sticky) : undefined;
    if (cookie === undefined) throw new RoutesFileError(`${where}.sticky: must be cookie or cookie:NAME`);
    if (mode === 'tcp') throw new RoutesFileError(`${where}.sticky: only for mode http or https`);
    out.sticky = { cookie };
  }
  return out;
}

/** Pure: a parsed routes document → a routing table, or a RoutesFileError naming the first mistake. */
export function routesFromDocument(doc: unknown, defaults: CompileDefaults): RoutingTable {
  if (!isObj(doc) || !Array.isArray(doc.routes)) throw new RoutesFileError('the file must hold `routes:`, a list of routes');
  const routes: RouteSpec[] = [];
  const names = new Set<string>();
  doc.routes.forEach((r: unknown, i: number) => {
    const where = `routes[${i}]`;
    if (!isObj(r)) throw new RoutesFileError(`${where}: must be a mapping`);
    for (const k of Object.keys(r)) if (!ROUTE_KEYS.has(k)) throw new RoutesFileError(`${where}.${k}: unknown key (${[...ROUTE_KEYS].join(', ')})`);
    if (typeof r.name !== 'string' || !r.name) throw new RoutesFileError(`${where}.name: required`);
    if (names.has(r.name)) throw new RoutesFileError(`${where}.name: "${r.name}" is used twice`);
    names.add(r.name);
    const mode = (r.mode ?? 'tcp') as Mode;
    if (mode !== 'tcp' && mode !== 'http' && mode !== 'https') throw new RoutesFileError(`${where}.mode: must be tcp, http or https`);
    if (!Array.isArray(r.backends)) throw new RoutesFileError(`${where}.backends: must be a list of "host:port"`);
    const hosts = r.hosts === undefined ? [] : r.hosts;
    if (!Array.isArray(hosts) || hosts.some((h) => typeof h !== 'string')) throw new RoutesFileError(`${where}.hosts: must be a list of host names`);
    if (hosts.length && mode === 'tcp') throw new RoutesFileError(`${where}.hosts: only for mode http or https`);
    if (r.idleTimeout !== undefined && mode !== 'tcp') throw new RoutesFileError(`${where}.idleTimeout: only for mode tcp (http clients: --client-idle-timeout)`);
    const backends = r.backends.map((b: unknown, j: number) => backend(b, `${where}.backends[${j}]`));
    const problems: string[] = [];
    routes.push({
      name: r.name,
      mode,
      port: port(r.publish, `${where}.publish`),
      hosts: (hosts as string[]).map((h) => h.toLowerCase()),
      ...routing(r, mode, where),
      health: routeHealth(defaults.health, health(r.health, `${where}.health`), 'health.timeout', problems),
      backends,
      proxyProtocol: r.proxyProtocol === true,
      ...(r.maxConnections !== undefined ? { maxConnections: connections(r.maxConnections, `${where}.maxConnections`) } : {}),
      ...(r.idleTimeout !== undefined ? { idleTimeout: duration(r.idleTimeout, `${where}.idleTimeout`) } : {}),
      ...httpsOptions(r, mode, where),
      ...backendProtocol(r.backend, mode, `${where}.backend`, problems),
      problems,
    });
  });
  const claims = new PortClaims();
  for (const route of routes) {
    const clash = claims.claim(route);
    if (clash) throw new RoutesFileError(`routes[${routes.indexOf(route)}] (${route.name}): ${clash}; L7 routes may share a port only with distinct hosts or paths`);
  }
  routes.sort(byPortName);
  const tls = tlsFromDocument(doc);
  return { routes, notices: [], ...(tls ? { tls } : {}) };
}

/**
 * `backend: http1 | h2c`. A wrong value is a problem on the route rather than a
 * refused file: the route still serves, over HTTP/1.1 (or as tcp).
 */
function backendProtocol(v: unknown, mode: Mode, where: string, problems: string[]): Pick<RouteSpec, 'backend'> {
  if (v === undefined || v === 'http1') return {};
  if (v !== 'h2c') {
    problems.push(`${where}: ${JSON.stringify(v)} is not http1 or h2c; backends are spoken to over HTTP/1.1`);
    return {};
  }
  if (mode === 'tcp') {
    problems.push(`${where}: h2c applies to mode http or https only; a tcp route pipes bytes`);
    return {};
  }
  return { backend: 'h2c' };
}

/** `redirect: https[:PORT]` (http routes), `hsts: max-age=...` and `tls: acme` (https routes). */
function httpsOptions(r: Obj, mode: Mode, where: string): Pick<RouteSpec, 'redirectHttps' | 'hsts' | 'acme'> {
  const out: Pick<RouteSpec, 'redirectHttps' | 'hsts' | 'acme'> = {};
  if (r.redirect !== undefined) {
    const port = typeof r.redirect === 'string' ? parseRedirect(r.redirect) : undefined;
    if (port === undefined) throw new RoutesFileError(`${where}.redirect: must be https or https:PORT`);
    if (mode !== 'http') throw new RoutesFileError(`${where}.redirect: only for mode http`);
    out.redirectHttps = port;
  }
  if (r.hsts !== undefined) {
    if (typeof r.hsts !== 'string' || !validHsts(r.hsts)) throw new RoutesFileError(`${where}.hsts: must be max-age=SECONDS[; includeSubDomains][; preload]`);
    if (mode !== 'https') throw new RoutesFileError(`${where}.hsts: only for mode https`);
    out.hsts = r.hsts;
  }
  // A route's `tls` only says where its certificate comes from; the files themselves go under the top-level `tls:`.
  if (r.tls !== undefined) {
    if (r.tls !== 'acme') throw new RoutesFileError(`${where}.tls: must be acme (certificate files go under the top-level tls.certificates)`);
    if (mode !== 'https') throw new RoutesFileError(`${where}.tls: only for mode https`);
    if (!Array.isArray(r.hosts) || r.hosts.length === 0) throw new RoutesFileError(`${where}.tls: acme needs hosts, the names to order a certificate for`);
    out.acme = true;
  }
  return out;
}

/** The top-level `tls: { certificates: [{ cert, key }] }`: paths as written (relative to the routes file). */
function tlsFromDocument(doc: Obj): TlsFiles | undefined {
  if (doc.tls === undefined) return undefined;
  const shape = 'tls: must be a mapping with `certificates:`, a list of { cert: PATH, key: PATH }';
  if (!isObj(doc.tls) || !Array.isArray(doc.tls.certificates)) throw new RoutesFileError(shape);
  for (const k of Object.keys(doc.tls)) if (k !== 'certificates') throw new RoutesFileError(`tls.${k}: unknown key (certificates)`);
  const certificates = doc.tls.certificates.map((c: unknown, i: number) => {
    const where = `tls.certificates[${i}]`;
    if (!isObj(c) || typeof c.cert !== 'string' || !c.cert || typeof c.key !== 'string' || !c.key) throw new RoutesFileError(`${where}: must be { cert: PATH, key: PATH }`);
    for (const k of Object.keys(c)) if (k !== 'cert' && k !== 'key') throw new RoutesFileError(`${where}.${k}: unknown key (cert, key)`);
    return { cert: c.cert, key: c.key };
  });
  return { certificates };
}

function readRoutesFile(path: string, defaults: CompileDefaults): RoutingTable {
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (err) {
    throw new RoutesFileError(`cannot read ${path}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new RoutesFileError(`${path} is not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  const table = routesFromDocument(doc, defaults);
  const dir = dirname(resolve(path));
  for (const c of table.tls?.certificates ?? []) {
    c.cert = resolve(dir, c.cert);
    c.key = resolve(dir, c.key);
  }
  return table;
}

export interface FileDiscoveryOptions {
  path: string;
  defaults: CompileDefaults;
  log: Logger;
  onTable: (table: RoutingTable) => void;
  onError: (err: unknown) => void;
}

export class FileDiscovery {
  readonly #o: FileDiscoveryOptions;
  readonly #listener = () => this.load();

  constructor(options: FileDiscoveryOptions) {
    this.#o = options;
  }

  /** Reads the file now; a later change is picked up by polling its status. */
  start(): void {
    this.load();
    fs.watchFile(this.#o.path, { interval: 250 }, this.#listener);
  }

  load(): void {
    try {
      this.#o.onTable(readRoutesFile(this.#o.path, this.#o.defaults));
    } catch (err) {
      this.#o.onError(err);
    }
  }

  stop(): void {
    fs.unwatchFile(this.#o.path, this.#listener);
  }
}
