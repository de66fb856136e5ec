// Parses a service's `meshd.*` labels. Every mistake becomes a problem string
// that names the label, what is wrong and how to write it; nothing throws.
import { parseDuration } from '../core/duration.js';
import { BALANCES, type Balance, type BackendProtocol, type HealthSpec, type Mode } from './spec.js';

export interface PublishSpec {
  published: number;
  target: number;
  mode: Mode;
}

export interface ServiceLabels {
  publish: PublishSpec[];
  health: Partial<HealthSpec>;
  hosts: string[];
  /** meshd.paths: path prefixes within the hosts. */
  paths: string[];
  stripPrefix?: boolean;
  lb?: Balance;
  /** meshd.sticky=cookie[:NAME]: the cookie's name. */
  sticky?: string;
  proxyProtocol: boolean;
  maxConnections?: number;
  idleTimeout?: number;
  /** meshd.redirect=https[:PORT]: the https port plain-HTTP routes redirect to. */
  redirectHttps?: number;
  /** meshd.hsts: Strict-Transport-Security for https answers. */
  hsts?: string;
  /** meshd.tls=acme: https ports get a certificate ordered over ACME for the service's hosts. */
  acme?: boolean;
  /** meshd.backend: the protocol spoken to the service's tasks on L7 ports. */
  backend?: BackendProtocol;
  problems: string[];
}

const LABEL_PREFIX = 'meshd.';
/** Upper bound of meshd.max-connections, the same as --max-connections'. */
export const MAX_ROUTE_CONNECTIONS = 10_000_000;
const PUBLISH = 'meshd.publish';

function parsePort(text: string): number | undefined {
  if (!/^\d{1,5}$/.test(text)) return undefined;
  const n = Number(text);
  return n >= 1 && n <= 65535 ? n : undefined;
}

/** `8080:80/http, 9000:6379` → publish specs, each item checked on its own. */
function parsePublish(value: string, problems: string[]): PublishSpec[] {
  const out: PublishSpec[] = [];
  for (const item of value.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^(\d+):(\d+)(?:\/([a-z]+))?$/.exec(item);
    if (!m) {
      problems.push(`${PUBLISH}: "${item}" is not PUBLISHED:TARGET[/tcp|/http|/https] (example: 8080:80/http)`);
      continue;
    }
    const published = parsePort(m[1]!);
    const target = parsePort(m[2]!);
    const mode = (m[3] ?? 'tcp') as Mode;
    if (published === undefined || target === undefined) {
      problems.push(`${PUBLISH}: "${item}" has a port outside 1-65535`);
      continue;
    }
    if (mode !== 'tcp' && mode !== 'http' && mode !== 'https') {
      problems.push(`${PUBLISH}: "${item}" has protocol "${m[3]}"; meshd serves /tcp (default), /http and /https`);
      continue;
    }
    if (out.some((p) => p.published === published)) {
      problems.push(`${PUBLISH}: port ${published} is listed twice`);
      continue;
    }
    out.push({ published, target, mode });
  }
  return out;
}

/** Name of the cookie `meshd.sticky=cookie` sets. */
export const DEFAULT_STICKY_COOKIE = 'meshd_sticky';

/**
 * A path prefix as meshd matches it: starts with /, no query, no dot segments,
 * no trailing / (except the root), so `/api` answers /api, /api/ and /api/x, never /apix.
 */
export function normalizePath(text: string): string | undefined {
  if (!/^\/[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*$/.test(text)) return undefined;
  if (text.split('/').some((seg) => seg === '.' || seg === '..') || text.includes('//')) return undefined;
  return text.length > 1 && text.endsWith('/') ? text.slice(0, -1) : text;
}

/** `cookie` or `cookie:NAME` → the cookie name; undefined when malformed. */
export function parseSticky(value: string): string | undefined {
  const m = /^cookie(?::([!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}))?$/.exec(value);
  return m ? m[1] ?? DEFAULT_STICKY_COOKIE : undefined;
}

export function isBalance(value: string): value is Balance {
  return (BALANCES as readonly string[]).includes(value);
}

/** `https` or `https:8443` → the https port (443 by default); undefined when malformed. */
export function parseRedirect(value: string): number | undefined {
  const m = /^https(?::(\d{1,5}))?$/.exec(value);
  return m ? (m[1] === undefined ? 443 : parsePort(m[1])) : undefined;
}

/** A Strict-Transport-Security value meshd will send: max-age, then includeSubDomains and preload. */
export function validHsts(value: string): boolean {
  return /^max-age=\d{1,10}(\s*;\s*(includeSubDomains|preload))*$/i.test(value);
}

function durationLabel(name: string, value: string, problems: string[]): number | undefined {
  const ms = parseDuration(value);
  if (ms === undefined || ms <= 0) {
    problems.push(`${name}: "${value}" is not a duration (write it like 500ms, 2s or 1m); the default is used`);
    return undefined;
  }
  return ms;
}

function countLabel(name: string, value: string, problems: string[]): number | undefined {
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 1000) {
    problems.push(`${name}: "${value}" is not a whole number from 1 to 1000; the default is used`);
    return undefined;
  }
  return Number(value);
}

export function parseLabels(labels: Record<string, string> | undefined): ServiceLabels {
  const out: ServiceLabels = { publish: [], health: {}, hosts: [], paths: [], proxyProtocol: false, problems: [] };
  for (const [name, raw] of Object.entries(labels ?? {})) {
    if (!name.startsWith(LABEL_PREFIX)) continue;
    const value = raw.trim();
    const p = out.problems;
    switch (name) {
      case PUBLISH:
        out.publish = parsePublish(value, p);
        break;
      case 'meshd.health.path':
        if (!value.startsWith('/')) p.push(`${name}: "${value}" must start with /; probes use TCP connect instead`);
        else out.health.path = value;
        break;
      case 'meshd.health.interval':
      case 'meshd.health.timeout': {
        const v = durationLabel(name, value, p);
        if (v !== undefined) out.health[name === 'meshd.health.interval' ? 'interval' : 'timeout'] = v;
        break;
      }
      case 'meshd.health.rise':
      case 'meshd.health.fall': {
        const v = countLabel(name, value, p);
        if (v !== undefined) out.health[name === 'meshd.health.rise' ? 'rise' : 'fall'] = v;
        break;
      }
      case 'meshd.hosts':
        out.hosts = value.split(',').map((h) => h.trim().toLowerCase()).filter(Boolean);
        break;
      case 'meshd.paths':
        for (const item of value.split(',').map((x) => x.trim()).filter(Boolean)) {
          const path = normalizePath(item);
          if (path === undefined) p.push(`${name}: "${item}" is not a path prefix (write it like /api); it is ignored`);
          else if (!out.paths.includes(path)) out.paths.push(path);
        }
        break;
      case 'meshd.strip-prefix':
        if (value === 'true' || value === 'false') out.stripPrefix = value === 'true';
        else p.push(`${name}: "${value}" is not true or false; the path is forwarded as it came`);
        break;
      case 'meshd.lb':
        if (isBalance(value)) out.lb = value;
        else p.push(`${name}: "${value}" is not one of ${BALANCES.join(', ')}; round-robin is used`);
        break;
      case 'meshd.sticky': {
        const cookie = parseSticky(value);
        if (cookie === undefined) p.push(`${name}: "${value}" is not cookie or cookie:NAME; requests are not kept on one backend`);
        else out.sticky = cookie;
        break;
      }
      case 'meshd.max-connections':
        if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > MAX_ROUTE_CONNECTIONS) {
          p.push(`${name}: "${value}" is not a whole number from 1 to ${MAX_ROUTE_CONNECTIONS}; the route has no limit of its own`);
        } else out.maxConnections = Number(value);
        break;
      case 'meshd.idle-timeout': {
        const v = durationLabel(name, value, p);
        if (v !== undefined) out.idleTimeout = v;
        break;
      }
      case 'meshd.redirect': {
        const port = parseRedirect(value);
        if (port === undefined) p.push(`${name}: "${value}" is not https or https:PORT; plain HTTP is served`);
        else out.redirectHttps = port;
        break;
      }
      case 'meshd.hsts':
        if (validHsts(value)) out.hsts = value;
        else p.push(`${name}: "${value}" is not max-age=SECONDS[; includeSubDomains][; preload]; no Strict-Transport-Security is sent`);
        break;
      case 'meshd.tls':
        if (value === 'acme') out.acme = true;
        else p.push(`${name}: "${value}" is not supported; write acme (certificates from files need no label)`);
        break;
      case 'meshd.backend':
        if (value === 'http1' || value === 'h2c') out.backend = value;
        else p.push(`${name}: "${value}" is not http1 or h2c; backends are spoken to over HTTP/1.1`);
        break;
      case 'meshd.proxy-protocol':
        if (value === 'v2') out.proxyProtocol = true;
        else p.push(`${name}: "${value}" is not supported; write v2`);
        break;
      default:
        p.push(`${name}: unknown label; meshd reads meshd.publish, meshd.hosts, meshd.paths, meshd.strip-prefix, meshd.lb, meshd.sticky, meshd.proxy-protocol, meshd.max-connections, meshd.idle-timeout, meshd.redirect, meshd.hsts, meshd.tls, meshd.backend and meshd.health.{path,interval,timeout,rise,fall}`);
    }
  }
  return out;
}
