// Compatibility: a service's Traefik labels (v1, v2/v3) or dockercloud/haproxy
// environment mapped onto meshd's own ServiceLabels, one set per Traefik router
// (or several when a rule's `||` is no product of hosts and paths). Whatever is
// not understood becomes a problem naming the label and what meshd does
// instead; nothing throws. One pass over the labels and environment per service.
import { parseDuration } from '../core/duration.js';
import type { SwarmService } from '../discovery/snapshot.js';
import type { RouteSet } from './compile.js';
import { DEFAULT_STICKY_COOKIE, normalizePath, parseSticky, type PublishSpec, type ServiceLabels } from './labels.js';
import type { Balance, HealthSpec } from './spec.js';

export const COMPAT_KINDS = ['traefik', 'dockercloud'] as const;
export type CompatKind = (typeof COMPAT_KINDS)[number];

/** A Traefik entrypoint as meshd serves it: a published port, and a mode when the entrypoint fixes one. */
export interface Entrypoint {
  port: number;
  mode?: 'http' | 'https';
}

export interface CompatOptions {
  kinds: readonly CompatKind[];
  /** --compat-entrypoint: Traefik entrypoint names → published ports. */
  entrypoints: Record<string, Entrypoint>;
}

export const DEFAULT_ENTRYPOINTS = 'web=80,websecure=443';

function parsePort(text: string): number | undefined {
  if (!/^\d{1,5}$/.test(text)) return undefined;
  const n = Number(text);
  return n >= 1 && n <= 65535 ? n : undefined;
}

/** `web=80,websecure=443[/https]` → entrypoints; a string saying what is wrong otherwise. */
export function parseEntrypoints(text: string): Record<string, Entrypoint> | string {
  const out: Record<string, Entrypoint> = {};
  for (const item of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^([A-Za-z0-9_-]+)=(\d{1,5})(?:\/(http|https))?$/.exec(item);
    const port = m ? parsePort(m[2]!) : undefined;
    if (!m || port === undefined) return `"${item}" is not NAME=PORT[/http|/https] (example: web=80,websecure=443)`;
    if (m[1]! in out) return `entrypoint ${m[1]} is listed twice`;
    out[m[1]!] = { port, ...(m[3] ? { mode: m[3] as 'http' | 'https' } : {}) };
  }
  return out;
}

// ---- Traefik rules ---------------------------------------------------------

/** One alternative of a rule: requests for these hosts (null: any) and path prefixes (null: every path). */
interface Conj {
  hosts: string[] | null;
  paths: string[] | null;
  /** Matchers meshd cannot check, left out of this alternative. */
  ignored: string[];
}

type Node =
  | { kind: 'or' | 'and'; items: Node[] }
  | { kind: 'not'; item: Node }
  | { kind: 'matcher'; name: string; args: string[] };

type Token = { t: 'ident' | 'str' | 'op'; v: string; at: number };

class RuleError extends Error {}

function tokenize(rule: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < rule.length) {
    const c = rule[i]!;
    if (/\s/.test(c)) { i++; continue; }
    if (c === '(' || c === ')' || c === ',' || c === '!') { out.push({ t: 'op', v: c, at: i }); i++; continue; }
    if ((c === '&' || c === '|') && rule[i + 1] === c) { out.push({ t: 'op', v: c + c, at: i }); i += 2; continue; }
    if (c === '`' || c === '"') {
      let j = i + 1;
      let v = '';
      while (j < rule.length && rule[j] !== c) {
        if (c === '"' && rule[j] === '\\' && j + 1 < rule.length) j++;
        v += rule[j];
        j++;
      }
      if (j >= rule.length) throw new RuleError(`unterminated string at ${i + 1}`);
      out.push({ t: 'str', v, at: i });
      i = j + 1;
      continue;
    }
    const m = /^[A-Za-z][A-Za-z0-9]*/.exec(rule.slice(i, i + 64));
    if (!m) throw new RuleError(`unexpected "${c}" at ${i + 1}`);
    out.push({ t: 'ident', v: m[0], at: i });
    i += m[0].length;
  }
  return out;
}

/** Traefik v2/v3 rule syntax: matchers, `&&`, `||`, `!` and parentheses. */
export function parseRule(rule: string): Node {
  const tokens = tokenize(rule);
  let pos = 0;
  const peek = () => tokens[pos];
  const where = () => (peek() ? `at ${peek()!.at + 1}` : 'at the end');
  const expect = (v: string) => {
    if (peek()?.t !== 'op' || peek()!.v !== v) throw new RuleError(`expected "${v}" ${where()}`);
    pos++;
  };
  const list = (kind: 'or' | 'and', op: string, next: () => Node): Node => {
    const items = [next()];
    while (peek()?.t === 'op' && peek()!.v === op) { pos++; items.push(next()); }
    return items.length === 1 ? items[0]! : { kind, items };
  };
  const or = (): Node => list('or', '||', and);
  const and = (): Node => list('and', '&&', unary);
  const unary = (): Node => {
    const tok = peek();
    if (tok?.t === 'op' && tok.v === '!') { pos++; return { kind: 'not', item: unary() }; }
    if (tok?.t === 'op' && tok.v === '(') { pos++; const inner = or(); expect(')'); return inner; }
    if (tok?.t !== 'ident') throw new RuleError(`expected a matcher such as Host(\`example.com\`) ${where()}`);
    pos++;
    expect('(');
    const args: string[] = [];
    if (!(peek()?.t === 'op' && peek()!.v === ')')) {
      for (;;) {
        const arg = peek();
        if (arg?.t !== 'str') throw new RuleError(`expected a quoted value in ${tok.v}(...) ${where()}`);
        args.push(arg.v);
        pos++;
        if (peek()?.t === 'op' && peek()!.v === ',') { pos++; continue; }
        break;
      }
    }
    expect(')');
    return { kind: 'matcher', name: tok.v, args };
  };
  const node = or();
  if (pos < tokens.length) throw new RuleError(`unexpected "${peek()!.v}" ${where()}`);
  return node;
}

function show(node: Node): string {
  if (node.kind === 'matcher') return `${node.name}(${node.args.map((a) => `\`${a}\``).join(', ')})`;
  if (node.kind === 'not') return `!${show(node.item)}`;
  return `(${node.items.map(show).join(node.kind === 'or' ? ' || ' : ' && ')})`;
}

/** Most alternatives a rule may expand to; more is a problem, not a blow-up. */
const MAX_ALTERNATIVES = 64;

function validHost(host: string): boolean {
  return /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(host);
}

/** Host values of a matcher; wildcards and other unmatchable names are problems. */
function hostArgs(name: string, args: string[], problems: string[]): string[] {
  const hosts: string[] = [];
  for (const raw of args) {
    const h = raw.trim().toLowerCase();
    if (validHost(h)) { if (!hosts.includes(h)) hosts.push(h); } else problems.push(`${name}: "${raw}" is not a host name meshd matches (no wildcards); it is left out`);
  }
  return hosts;
}

function pathArgs(name: string, args: string[], problems: string[]): string[] {
  const paths: string[] = [];
  for (const raw of args) {
    const p = normalizePath(raw);
    if (p === undefined) problems.push(`${name}: "${raw}" is not a path prefix meshd matches; it is left out`);
    else if (!paths.includes(p)) paths.push(p);
  }
  return paths;
}

const ANY: Conj = { hosts: null, paths: null, ignored: [] };

function intersectHosts(a: string[] | null, b: string[] | null): string[] | null {
  if (a === null) return b;
  if (b === null) return a;
  return a.filter((h) => b.includes(h));
}

const within = (path: string, prefix: string) => prefix === '/' || path === prefix || path.startsWith(`${prefix}/`);

function intersectPaths(a: string[] | null, b: string[] | null): string[] | null {
  if (a === null) return b;
  if (b === null) return a;
  const out: string[] = [];
  for (const p of a) for (const q of b) {
    const both = within(q, p) ? q : within(p, q) ? p : undefined;
    if (both !== undefined && !out.includes(both)) out.push(both);
  }
  return out;
}

/** The rule as alternatives (disjunctive normal form) of hosts × paths. */
function expand(node: Node, problems: string[]): Conj[] {
  switch (node.kind) {
    case 'matcher': {
      const { name, args } = node;
      if ((name === 'Host' || name === 'HostHeader') && args.length) {
        const hosts = hostArgs(show(node), args, problems);
        return hosts.length ? [{ hosts, paths: null, ignored: [] }] : [];
      }
      if ((name === 'PathPrefix' || name === 'Path') && args.length) {
        if (name === 'Path') problems.push(`${show(node)}: meshd matches path prefixes, not exact paths; served as PathPrefix`);
        const paths = pathArgs(show(node), args, problems);
        return paths.length ? [{ hosts: null, paths, ignored: [] }] : [];
      }
      return [{ ...ANY, ignored: [show(node)] }];
    }
    case 'not':
      return [{ ...ANY, ignored: [show(node)] }];
    case 'or':
      return node.items.flatMap((item) => expand(item, problems));
    case 'and': {
      let acc: Conj[] = [ANY];
      let never = false;
      for (const item of node.items) {
        const next: Conj[] = [];
        for (const right of expand(item, problems)) for (const left of acc) {
          const hosts = intersectHosts(left.hosts, right.hosts);
          const paths = intersectPaths(left.paths, right.paths);
          if (hosts?.length === 0 || paths?.length === 0) { never = true; continue; }
          next.push({ hosts, paths, ignored: [...left.ignored, ...right.ignored] });
        }
        if (next.length > MAX_ALTERNATIVES) throw new RuleError(`expands to more than ${MAX_ALTERNATIVES} alternatives`);
        acc = next;
      }
      if (never) problems.push(`${show(node)}: an alternative asks for two different hosts or paths at once and never matches; it is left out`);
      return acc;
    }
  }
}

const keyOf = (list: string[] | null) => (list === null ? '*' : [...list].sort().join(' '));

function union(a: string[] | null, b: string[] | null): string[] | null {
  if (a === null || b === null) return null;
  return [...a, ...b.filter((x) => !a.includes(x))];
}

/** Merges alternatives into as few hosts × paths sets as the union allows. */
function mergeAlternatives(conjs: { hosts: string[] | null; paths: string[] | null }[]): { hosts: string[] | null; paths: string[] | null }[] {
  const byPaths = new Map<string, { hosts: string[] | null; paths: string[] | null }>();
  for (const c of conjs) {
    const k = keyOf(c.paths);
    const held = byPaths.get(k);
    if (held) held.hosts = union(held.hosts, c.hosts);
    else byPaths.set(k, { hosts: c.hosts, paths: c.paths });
  }
  const byHosts = new Map<string, { hosts: string[] | null; paths: string[] | null }>();
  for (const c of byPaths.values()) {
    const k = keyOf(c.hosts);
    const held = byHosts.get(k);
    if (held) held.paths = union(held.paths, c.paths);
    else byHosts.set(k, { ...c });
  }
  return [...byHosts.values()];
}

/** A rule (v2/v3) → hosts × paths sets; problems say what is left out. undefined when nothing of it can be served. */
export function ruleSets(label: string, rule: string, problems: string[]): { hosts: string[] | null; paths: string[] | null }[] | undefined {
  let conjs: Conj[];
  try {
    conjs = expand(parseRule(rule), problems);
  } catch (err) {
    if (!(err instanceof RuleError)) throw err;
    problems.push(`${label}: "${rule}" cannot be read (${err.message}); the router is not served`);
    return undefined;
  }
  const kept: Conj[] = [];
  for (const c of conjs) {
    if (c.ignored.length && c.hosts === null && c.paths === null) {
      problems.push(`${label}: ${c.ignored.join(' && ')} is not supported by meshd (it matches hosts and path prefixes); that alternative is not served`);
      continue;
    }
    if (c.ignored.length) problems.push(`${label}: ${c.ignored.join(' && ')} is not supported by meshd; the route answers without that condition`);
    kept.push(c);
  }
  if (!kept.length) {
    problems.push(`${label}: nothing in "${rule}" is a host or path prefix meshd can serve; the router is not served`);
    return undefined;
  }
  return mergeAlternatives(kept);
}

// ---- building sets ---------------------------------------------------------

function labelsOf(p: Partial<ServiceLabels>): ServiceLabels {
  return { publish: [], health: {}, hosts: [], paths: [], proxyProtocol: false, problems: [], ...p };
}

interface Draft {
  base: string;
  labels: ServiceLabels;
  from: string[];
  anyHost?: boolean;
}

/** Names the sets: one set keeps the service's name; several get `@base`, `@base-2`, ... */
function finish(drafts: Draft[], general: string[]): RouteSet[] {
  const out: RouteSet[] = [];
  const used = new Map<string, number>();
  for (const d of drafts) {
    const n = (used.get(d.base) ?? 0) + 1;
    used.set(d.base, n);
    out.push({ labels: d.labels, from: d.from, ...(d.anyHost ? { anyHost: true } : {}), ...(drafts.length > 1 ? { suffix: n === 1 ? d.base : `${d.base}-${n}` } : {}) });
  }
  if (general.length) out.push({ labels: labelsOf({ problems: general }) });
  return out;
}

function boolValue(label: string, value: string, problems: string[], meaning: string): boolean | undefined {
  const v = value.trim().toLowerCase();
  if (v === 'true' || v === 'false') return v === 'true';
  problems.push(`${label}: "${value}" is not true or false; ${meaning}`);
  return undefined;
}

function durationValue(label: string, value: string, problems: string[]): number | undefined {
  const ms = parseDuration(value);
  if (ms === undefined || ms <= 0) {
    problems.push(`${label}: "${value}" is not a duration meshd reads (500ms, 2s, 1m); the default is used`);
    return undefined;
  }
  return ms;
}

/** A sticky cookie's name; meshd's default name, and a problem, when it is not one. */
function cookieName(label: string, value: string, problems: string[]): string {
  const cookie = parseSticky(`cookie:${value.trim()}`);
  if (cookie === undefined) problems.push(`${label}: "${value}" is not a cookie name; the cookie is named ${DEFAULT_STICKY_COOKIE}`);
  return cookie ?? DEFAULT_STICKY_COOKIE;
}

function portValue(label: string, value: string, problems: string[]): number | undefined {
  const port = parsePort(value.trim());
  if (port === undefined) problems.push(`${label}: "${value}" is not a port from 1 to 65535`);
  return port;
}

/** A Traefik health check or Host header setting (`healthcheck.path`, ..., `passhostheader`); false when `what` is none. */
function checkLabel(what: string, name: string, value: string, health: Partial<HealthSpec>, problems: string[]): boolean {
  switch (what) {
    case 'healthcheck.path':
      if (value.startsWith('/')) health.path = value;
      else problems.push(`${name}: "${value}" must start with /; probes use TCP connect instead`);
      return true;
    case 'healthcheck.interval':
    case 'healthcheck.timeout': {
      const ms = durationValue(name, value, problems);
      if (ms !== undefined) health[what === 'healthcheck.interval' ? 'interval' : 'timeout'] = ms;
      return true;
    }
    case 'passhostheader':
      if (value.trim() !== 'true') problems.push(`${name}: meshd always passes the client's Host header; "${value}" is ignored`);
      return true;
    default:
      return false;
  }
}

// ---- Traefik v2/v3 ---------------------------------------------------------

const T2 = /^traefik\.(http|tcp|udp)\.(routers|services|middlewares|serverstransports)\.([^.]+)\.(.+)$/;

type Group = Map<string, Map<string, string>>;

function addTo(group: Group, name: string, key: string, value: string): void {
  const held = group.get(name);
  if (held) held.set(key, value);
  else group.set(name, new Map([[key, value]]));
}

const labelName = (kind: string, name: string, key: string) => `traefik.http.${kind}.${name}.${key}`;

/** A `name@provider` reference: this service's own name, or undefined for another provider's. */
function ownRef(ref: string): string | undefined {
  const at = ref.indexOf('@');
  if (at < 0) return ref;
  const provider = ref.slice(at + 1);
  return provider === 'docker' || provider === 'swarm' ? ref.slice(0, at) : undefined;
}

function traefikV2(service: SwarmService, labels: Record<string, string>, options: CompatOptions, health: Partial<HealthSpec>, general: string[]): Draft[] {
  const routers: Group = new Map();
  const services: Group = new Map();
  const middlewares: Group = new Map();
  for (const [name, value] of Object.entries(labels)) {
    const m = T2.exec(name);
    if (!m) {
      if (name === 'traefik.enable' || name === 'traefik.docker.network' || name === 'traefik.swarm.network') continue;
      general.push(`${name}: not mapped by meshd's Traefik compatibility; it has no effect`);
      continue;
    }
    if (m[1] !== 'http') { general.push(`${name}: Traefik ${m[1]!.toUpperCase()} routers are not mapped; write meshd.publish=PORT:TARGET for an L4 port`); continue; }
    if (m[2] === 'serverstransports') { general.push(`${name}: servers transports are not mapped; meshd's own upstream settings apply`); continue; }
    addTo(m[2] === 'routers' ? routers : m[2] === 'services' ? services : middlewares, m[3]!, m[4]!, value);
  }
  // A service with labels but no router gets Traefik's default router, named after the service.
  if (!routers.size) routers.set(service.Spec.Name, new Map());
  const drafts: Draft[] = [];
  const unusedServices = new Set(services.keys());
  const usedMiddlewares = new Set<string>();
  for (const [router, keys] of [...routers].sort((a, b) => a[0].localeCompare(b[0]))) {
    const rl = (key: string) => labelName('routers', router, key);
    const problems: string[] = [];
    const from = [...keys.keys()].map(rl);
    // The service: named by the router, or the only one there is.
    let svcName: string | undefined;
    const ref = keys.get('service');
    if (ref !== undefined) {
      svcName = ownRef(ref.trim());
      if (svcName === undefined) { general.push(`${rl('service')}: "${ref}" is another provider's service; router ${router} is not served`); continue; }
    } else if (services.size === 1) svcName = [...services.keys()][0]!;
    else if (services.size > 1) { general.push(`router ${router}: several services are defined (${[...services.keys()].join(', ')}) and ${rl('service')} names none; the router is not served`); continue; }
    const svc = svcName !== undefined ? services.get(svcName) : undefined;
    if (svcName !== undefined) unusedServices.delete(svcName);
    const sl = (key: string) => labelName('services', svcName ?? router, key);
    const portText = svc?.get('loadbalancer.server.port');
    if (portText === undefined) {
      general.push(`router ${router}: no target port; add ${sl('loadbalancer.server.port')} (Traefik needs it on swarm too); the router is not served`);
      continue;
    }
    const target = portValue(sl('loadbalancer.server.port'), portText, general);
    if (target === undefined) continue;
    // The service's settings.
    let sticky: string | undefined;
    let lb: Balance | undefined;
    const routeHealth: Partial<HealthSpec> = { ...health };
    for (const [key, value] of svc ?? []) {
      const name = sl(key);
      from.push(name);
      switch (key) {
        case 'loadbalancer.server.port':
          break;
        case 'loadbalancer.sticky':
        case 'loadbalancer.sticky.cookie':
          if (boolValue(name, value, problems, 'requests are not kept on one backend')) sticky ??= parseSticky('cookie');
          break;
        case 'loadbalancer.sticky.cookie.name':
          sticky = cookieName(name, value, problems);
          break;
        case 'loadbalancer.strategy':
          if (value === 'wrr') lb = 'round-robin';
          else if (value === 'p2c') lb = 'p2c';
          else problems.push(`${name}: "${value}" is not wrr or p2c; round-robin is used`);
          break;
        default:
          if (!checkLabel(key.replace(/^loadbalancer\./, ''), name, value, routeHealth, problems)) problems.push(`${name}: not mapped by meshd; it has no effect`);
      }
    }
    // The router's settings.
    let rule: ReturnType<typeof ruleSets> = [{ hosts: null, paths: null }];
    let entrypoints: string[] | undefined;
    let tls = false;
    let resolver = false;
    const mws: string[] = [];
    for (const [key, value] of keys) {
      const name = rl(key);
      switch (key) {
        case 'rule':
          rule = ruleSets(name, value, problems);
          break;
        case 'service':
          break;
        case 'entrypoints':
          entrypoints = value.split(',').map((s) => s.trim()).filter(Boolean);
          break;
        case 'tls':
          tls = boolValue(name, value, problems, 'the router is served without TLS') === true || tls;
          break;
        case 'tls.certresolver':
          tls = true;
          resolver = true;
          break;
        case 'middlewares':
          mws.push(...value.split(',').map((s) => s.trim()).filter(Boolean));
          break;
        case 'priority':
          problems.push(`${name}: meshd picks the longest matching path prefix of the most specific host; the priority is ignored`);
          break;
        default:
          problems.push(`${name}: not mapped by meshd; it has no effect`);
      }
    }
    if (rule === undefined) { general.push(...problems); continue; }
    // Middlewares meshd has an equivalent of.
    let redirectHttps: number | undefined;
    let stripPrefixes: string[] | undefined;
    for (const ref of mws) {
      const mw = ownRef(ref);
      const defined = mw !== undefined ? middlewares.get(mw) : undefined;
      if (!defined) { problems.push(`${rl('middlewares')}: middleware ${ref} is not defined on this service; requests are forwarded without it`); continue; }
      usedMiddlewares.add(mw!);
      for (const [key, value] of defined) {
        const name = labelName('middlewares', mw!, key);
        from.push(name);
        if (key === 'redirectscheme.scheme' && value === 'https') redirectHttps ??= 443;
        else if (key === 'redirectscheme.port') {
          const port = portValue(name, value, problems);
          if (port !== undefined) redirectHttps = port;
        } else if (key === 'redirectscheme.permanent') {
          /* meshd's redirect is always permanent (308) */
        } else if (key === 'stripprefix.prefixes') stripPrefixes = pathArgs(name, value.split(','), problems);
        else problems.push(`${name}: meshd has no such middleware; requests are forwarded without it`);
      }
    }
    // Entrypoints → published ports.
    const publish: PublishSpec[] = [];
    const eps = entrypoints ?? [];
    if (!eps.length) publish.push({ published: tls ? 443 : 80, target, mode: tls ? 'https' : 'http' });
    for (const ep of eps) {
      const spec = options.entrypoints[ep];
      if (!spec) { problems.push(`${rl('entrypoints')}: entrypoint ${ep} is not in --compat-entrypoint (${Object.keys(options.entrypoints).join(', ') || 'none'}); the router is not served on it`); continue; }
      const mode = spec.mode ?? (tls ? 'https' : 'http');
      if (spec.mode === 'http' && tls) problems.push(`${rl('entrypoints')}: entrypoint ${ep} is plain http (--compat-entrypoint); the router's TLS is not served on port ${spec.port}`);
      if (!publish.some((p) => p.published === spec.port)) publish.push({ published: spec.port, target, mode });
    }
    if (!publish.length) { general.push(...problems, `router ${router}: no entrypoint meshd serves; the router is not served`); continue; }
    for (const set of rule) {
      const paths = set.paths ?? [];
      let stripPrefix: boolean | undefined;
      if (stripPrefixes) {
        if (paths.length && paths.every((p) => stripPrefixes!.includes(p))) stripPrefix = true;
        else problems.push(`${rl('middlewares')}: stripprefix.prefixes (${stripPrefixes.join(', ')}) differ from the rule's path prefixes (${paths.join(', ') || 'none'}); meshd strips only the matched prefix, so the path is forwarded as it came`);
      }
      drafts.push({
        base: router,
        from,
        labels: labelsOf({
          publish,
          health: routeHealth,
          hosts: set.hosts ?? [],
          paths,
          ...(stripPrefix ? { stripPrefix } : {}),
          ...(lb ? { lb } : {}),
          ...(sticky ? { sticky } : {}),
          ...(redirectHttps !== undefined ? { redirectHttps } : {}),
          ...(resolver ? { acme: true } : {}),
          problems: [...problems],
        }),
      });
    }
  }
  for (const s of unusedServices) general.push(`${labelName('services', s, '*')}: no router uses service ${s}; it is not served`);
  for (const m of middlewares.keys()) if (!usedMiddlewares.has(m)) general.push(`${labelName('middlewares', m, '*')}: no router uses middleware ${m}; it has no effect`);
  return drafts;
}

// ---- Traefik v1 ------------------------------------------------------------

/** v1 `Host:a,b;PathPrefix:/p` → one hosts × paths set. */
function ruleV1(label: string, rule: string, problems: string[]): { hosts: string[] | null; paths: string[] | null; strip: boolean } | undefined {
  let hosts: string[] | null = null;
  let paths: string[] | null = null;
  let strip = false;
  for (const part of rule.split(';').map((s) => s.trim()).filter(Boolean)) {
    const colon = part.indexOf(':');
    const name = colon < 0 ? part : part.slice(0, colon).trim();
    const args = colon < 0 ? [] : part.slice(colon + 1).split(',').map((s) => s.trim()).filter(Boolean);
    if (!args.length) { problems.push(`${label}: "${part}" is not MATCHER:VALUE[,VALUE]; it is left out`); continue; }
    if (name === 'Host') {
      const hs = hostArgs(`${label} ${part}`, args, problems);
      if (!hs.length) return undefined;
      hosts = intersectHosts(hosts, hs);
    } else if (name === 'PathPrefix' || name === 'PathPrefixStrip' || name === 'Path' || name === 'PathStrip') {
      if (name.startsWith('Path') && !name.startsWith('PathPrefix')) problems.push(`${label}: ${name} matches exact paths; meshd matches prefixes, so it is served as a prefix`);
      const ps = pathArgs(`${label} ${part}`, args, problems);
      if (!ps.length) return undefined;
      paths = intersectPaths(paths, ps);
      if (name.endsWith('Strip')) strip = true;
    } else problems.push(`${label}: ${name} is not supported by meshd (it matches hosts and path prefixes); the route answers without that condition`);
    if (hosts?.length === 0 || paths?.length === 0) {
      problems.push(`${label}: "${rule}" never matches; the service is not served`);
      return undefined;
    }
  }
  return { hosts, paths, strip };
}

const V1_CHECKS: Record<string, string> = {
  'traefik.backend.healthcheck.path': 'healthcheck.path',
  'traefik.backend.healthcheck.interval': 'healthcheck.interval',
  'traefik.backend.healthcheck.timeout': 'healthcheck.timeout',
  'traefik.frontend.passHostHeader': 'passhostheader',
};

const V1_SEGMENT = /^traefik\.[^.]+\.(port|frontend\..+|backend\..+|protocol|weight)$/;

function traefikV1(labels: Record<string, string>, health: Partial<HealthSpec>, general: string[]): Draft[] {
  const problems: string[] = [];
  const from: string[] = [];
  let target: number | undefined;
  let rule: ReturnType<typeof ruleV1> = { hosts: null, paths: null, strip: false };
  let sticky: string | undefined;
  let cookie: string | undefined;
  let lb: Balance | undefined;
  const routeHealth: Partial<HealthSpec> = { ...health };
  for (const [name, value] of Object.entries(labels)) {
    from.push(name);
    switch (name) {
      case 'traefik.enable':
      case 'traefik.docker.network':
      case 'traefik.backend':
        break;
      case 'traefik.port':
        target = portValue(name, value, general);
        break;
      case 'traefik.frontend.rule':
        rule = ruleV1(name, value, problems);
        break;
      case 'traefik.backend.loadbalancer.stickiness':
      case 'traefik.backend.loadbalancer.sticky':
        if (boolValue(name, value, problems, 'requests are not kept on one backend')) sticky = parseSticky('cookie');
        break;
      case 'traefik.backend.loadbalancer.stickiness.cookieName':
        cookie = cookieName(name, value, problems);
        break;
      case 'traefik.backend.loadbalancer.method':
        if (value === 'wrr') lb = 'round-robin';
        else if (value === 'drr') lb = 'least-conn';
        else problems.push(`${name}: "${value}" is not wrr or drr; round-robin is used`);
        break;
      case 'traefik.frontend.entryPoints':
        problems.push(`${name}: Traefik v1 entrypoints are not mapped; served on port 80 (/http)`);
        break;
      default:
        if (checkLabel(V1_CHECKS[name] ?? '', name, value, routeHealth, problems)) break;
        if (V1_SEGMENT.test(name)) problems.push(`${name}: Traefik v1 segments are not mapped; write meshd.publish and meshd.hosts`);
        else problems.push(`${name}: not mapped by meshd's Traefik compatibility; it has no effect`);
    }
  }
  if (target === undefined) {
    general.push(...problems, 'traefik.port: missing; Traefik labels on swarm need the target port (traefik.port=80); the service is not served');
    return [];
  }
  if (rule === undefined) { general.push(...problems); return []; }
  const paths = rule.paths ?? [];
  if (cookie !== undefined && sticky === undefined) problems.push('traefik.backend.loadbalancer.stickiness.cookieName: needs traefik.backend.loadbalancer.stickiness=true; requests are not kept on one backend');
  return [{
    base: 'traefik',
    from: from.sort(),
    labels: labelsOf({
      publish: [{ published: 80, target, mode: 'http' }],
      health: routeHealth,
      hosts: rule.hosts ?? [],
      paths,
      ...(rule.strip && paths.length ? { stripPrefix: true } : {}),
      ...(lb ? { lb } : {}),
      ...(sticky ? { sticky: cookie ?? sticky } : {}),
      problems,
    }),
  }];
}

function traefik(service: SwarmService, options: CompatOptions, health: Partial<HealthSpec>, general: string[]): Draft[] {
  const labels: Record<string, string> = {};
  let v2 = false;
  for (const [name, value] of Object.entries(service.Spec.Labels ?? {})) {
    if (!name.startsWith('traefik.')) continue;
    labels[name] = value;
    if (T2.test(name)) v2 = true;
  }
  if (!Object.keys(labels).length) return [];
  const enable = labels['traefik.enable']?.trim();
  if (enable === 'false') return [];
  if (enable !== undefined && enable !== 'true') general.push(`traefik.enable: "${enable}" is not true or false; read as true`);
  if (v2) {
    const v1: Record<string, string> = {};
    for (const [name, value] of Object.entries(labels)) {
      if (name === 'traefik.port' || name.startsWith('traefik.frontend.') || name.startsWith('traefik.backend.')) {
        general.push(`${name}: a Traefik v1 label next to v2 labels; ignored, as Traefik v2 does`);
      } else v1[name] = value;
    }
    return traefikV2(service, v1, options, health, general);
  }
  if (labels['traefik.port'] === undefined && Object.keys(labels).every((n) => n === 'traefik.enable' || n === 'traefik.docker.network')) {
    general.push('traefik.enable: no port to route to; add traefik.http.services.NAME.loadbalancer.server.port (or v1 traefik.port); the service is not served');
    return [];
  }
  return traefikV1(labels, health, general);
}

// ---- dockercloud/haproxy ---------------------------------------------------

/** dockercloud/haproxy variables meshd reads, or knows and reports. */
const DOCKERCLOUD = new Set([
  'SERVICE_PORTS', 'VIRTUAL_HOST', 'TCP_PORTS', 'BALANCE', 'FORCE_SSL', 'HSTS', 'HSTS_MAX_AGE', 'COOKIE', 'HEALTH_CHECK', 'HTTP_CHECK',
  'EXCLUDE_PORTS', 'SSL_CERT', 'DEFAULT_SSL_CERT', 'CA_CERT', 'GZIP_COMPRESSION_TYPE', 'OPTION', 'EXTRA_ROUTE_SETTINGS', 'EXTRA_SETTINGS',
  'VIRTUAL_HOST_WEIGHT', 'FORCE_DEFAULT_BACKEND', 'EXCLUDE_BASIC_AUTH', 'APPSESSION', 'FAILOVER',
]);

const DOCKERCLOUD_BALANCE: Record<string, Balance> = { roundrobin: 'round-robin', leastconn: 'least-conn', source: 'source-hash' };

function portList(name: string, value: string, problems: string[]): number[] {
  const out: number[] = [];
  for (const item of value.split(',').map((s) => s.trim()).filter(Boolean)) {
    const port = portValue(name, item, problems);
    if (port !== undefined && !out.includes(port)) out.push(port);
  }
  return out;
}

interface VirtualHost { port: number; mode: 'http' | 'https'; host: string | null; path: string | null }

/** One VIRTUAL_HOST item: `[scheme://]host[:port][/path]`. */
function virtualHost(item: string, problems: string[]): VirtualHost | undefined {
  const bad = (why: string) => { problems.push(`VIRTUAL_HOST: "${item}" ${why}; it is left out`); return undefined; };
  let rest = item;
  let secure = false;
  const scheme = /^([a-z]+):\/\//i.exec(rest);
  if (scheme) {
    const s = scheme[1]!.toLowerCase();
    if (s !== 'http' && s !== 'https' && s !== 'ws' && s !== 'wss') return bad(`has scheme ${s}; meshd serves http and https`);
    secure = s === 'https' || s === 'wss';
    rest = rest.slice(scheme[0].length);
  }
  const slash = rest.indexOf('/');
  const hostport = slash < 0 ? rest : rest.slice(0, slash);
  let pathText = slash < 0 ? '' : rest.slice(slash);
  const colon = hostport.lastIndexOf(':');
  const hostText = (colon < 0 ? hostport : hostport.slice(0, colon)).toLowerCase();
  let port = secure ? 443 : 80;
  if (colon >= 0) {
    const p = parsePort(hostport.slice(colon + 1));
    if (p === undefined) return bad('has no port from 1 to 65535 after the colon');
    port = p;
  }
  let host: string | null = null;
  if (hostText !== '*' && hostText !== '') {
    if (hostText.includes('*')) return bad('is a wildcard host, which meshd does not match; name each host');
    if (!validHost(hostText)) return bad('is not a host name');
    host = hostText;
  }
  if (pathText.endsWith('*')) pathText = pathText.slice(0, -1);
  let path: string | null = null;
  if (pathText && pathText !== '/') {
    if (pathText.includes('*')) return bad('has a wildcard inside its path; meshd matches path prefixes');
    const p = normalizePath(pathText);
    if (p === undefined) return bad('has a path meshd cannot match as a prefix');
    path = p;
  }
  return { port, mode: secure ? 'https' : 'http', host, path };
}

function dockercloud(service: SwarmService, health: Partial<HealthSpec>, general: string[]): Draft[] {
  const env = new Map<string, string>();
  for (const entry of service.Spec.TaskTemplate?.ContainerSpec?.Env ?? []) {
    const eq = entry.indexOf('=');
    const name = eq < 0 ? entry : entry.slice(0, eq);
    if (DOCKERCLOUD.has(name)) env.set(name, eq < 0 ? '' : entry.slice(eq + 1));
  }
  if (!env.size) return [];
  const servicePorts = env.get('SERVICE_PORTS');
  if (servicePorts === undefined) {
    general.push(`${[...env.keys()].join(', ')}: set without SERVICE_PORTS, which dockercloud/haproxy needs on swarm; the service is not served`);
    return [];
  }
  const problems: string[] = [];
  const ports = portList('SERVICE_PORTS', servicePorts, general);
  const tcp: number[] = [];
  let lb: Balance | undefined;
  let sticky: string | undefined;
  let redirectHttps: number | undefined;
  let hsts = false;
  const routeHealth: Partial<HealthSpec> = { ...health };
  for (const [name, value] of env) {
    switch (name) {
      case 'SERVICE_PORTS':
      case 'VIRTUAL_HOST':
      case 'HSTS_MAX_AGE':
        break;
      case 'TCP_PORTS':
        for (const item of value.split(',').map((s) => s.trim()).filter(Boolean)) {
          if (item.endsWith('/ssl')) { general.push(`TCP_PORTS: "${item}" is TCP over TLS, which meshd does not terminate; write meshd.publish=PORT:TARGET to pass it through`); continue; }
          const port = portValue(name, item, general);
          if (port !== undefined && !tcp.includes(port)) tcp.push(port);
        }
        break;
      case 'BALANCE':
        lb = DOCKERCLOUD_BALANCE[value.trim()];
        if (!lb) problems.push(`BALANCE: "${value}" is not roundrobin, leastconn or source; round-robin is used`);
        break;
      case 'FORCE_SSL':
        if (value.trim() !== '') redirectHttps = 443;
        break;
      case 'HSTS':
        if (value.trim() !== '') hsts = true;
        break;
      case 'COOKIE': {
        const words = value.trim().split(/\s+/);
        const cookie = words.includes('insert') ? parseSticky(`cookie:${words[0]}`) : undefined;
        if (cookie === undefined) problems.push(`COOKIE: "${value}" is not NAME insert ...; requests are not kept on one backend`);
        else sticky = cookie;
        break;
      }
      case 'HEALTH_CHECK': {
        const words = value.trim().split(/\s+/).filter(Boolean);
        for (let i = 0; i < words.length; i++) {
          const w = words[i]!;
          const next = words[i + 1];
          if (w === 'check') continue;
          if ((w === 'inter' || w === 'rise' || w === 'fall') && next !== undefined) {
            i++;
            if (w === 'inter') { const ms = durationValue('HEALTH_CHECK inter', next, problems); if (ms !== undefined) routeHealth.interval = ms; }
            else if (/^\d+$/.test(next) && Number(next) >= 1 && Number(next) <= 1000) routeHealth[w] = Number(next);
            else problems.push(`HEALTH_CHECK: ${w} "${next}" is not a whole number from 1 to 1000; the default is used`);
          } else problems.push(`HEALTH_CHECK: "${w}" is not mapped (meshd reads check, inter, rise and fall); it is ignored`);
        }
        break;
      }
      case 'HTTP_CHECK': {
        const m = /^(?:GET|HEAD|OPTIONS)\s+(\/\S*)/.exec(value.trim());
        if (m) routeHealth.path = m[1]!;
        else problems.push(`HTTP_CHECK: "${value}" names no path to GET; probes use TCP connect`);
        break;
      }
      default:
        problems.push(`${name}: not mapped by meshd; it has no effect${name.endsWith('SSL_CERT') || name === 'CA_CERT' ? ' (put certificates in --tls-dir)' : ''}`);
    }
  }
  const http = ports.filter((p) => !tcp.includes(p));
  const drafts: Draft[] = [];
  const common = {
    health: routeHealth,
    ...(lb ? { lb } : {}),
    problems,
  };
  const fromOf = (...names: string[]) => [...env.keys()].filter((n) => names.includes(n) || !['SERVICE_PORTS', 'VIRTUAL_HOST', 'TCP_PORTS'].includes(n));
  if (http.length) {
    const target = http[0]!;
    const httpProblems = [...problems];
    if (http.length > 1) httpProblems.push(`SERVICE_PORTS: several HTTP ports (${http.join(', ')}); like dockercloud/haproxy, meshd balances one port a service, ${target}; list the others in TCP_PORTS or write meshd.publish`);
    const items = env.get('VIRTUAL_HOST')?.split(',').map((s) => s.trim()).filter(Boolean);
    const vhosts = items?.length
      ? items.map((item) => virtualHost(item, httpProblems)).filter((v): v is VirtualHost => v !== undefined)
      : [{ port: 80, mode: 'http' as const, host: null, path: null }];
    // Hosts × paths per published port, then one set per distinct hosts × paths, served on each of its ports.
    const byPort = new Map<string, { hosts: string[] | null; paths: string[] | null }[]>();
    for (const v of vhosts) {
      const key = `${v.port}/${v.mode}`;
      const alt = { hosts: v.host === null ? null : [v.host], paths: v.path === null ? null : [v.path] };
      const held = byPort.get(key);
      if (held) held.push(alt);
      else byPort.set(key, [alt]);
    }
    const sets = new Map<string, { hosts: string[] | null; paths: string[] | null; publish: PublishSpec[] }>();
    for (const [key, alts] of byPort) {
      const [published, mode] = key.split('/') as [string, 'http' | 'https'];
      for (const set of mergeAlternatives(alts)) {
        const k = `${keyOf(set.hosts)}|${keyOf(set.paths)}`;
        const pub = { published: Number(published), target, mode };
        const held = sets.get(k);
        if (held) held.publish.push(pub);
        else sets.set(k, { ...set, publish: [pub] });
      }
    }
    if (!sets.size) general.push('VIRTUAL_HOST: no entry meshd can serve; the HTTP port is not served');
    for (const set of sets.values()) {
      drafts.push({
        base: 'http',
        from: fromOf('SERVICE_PORTS', 'VIRTUAL_HOST'),
        // Without a virtual host, dockercloud/haproxy makes it the port's default backend.
        ...(set.hosts === null ? { anyHost: true } : {}),
        labels: labelsOf({
          ...common,
          publish: set.publish.sort((a, b) => a.published - b.published),
          hosts: set.hosts ?? [],
          paths: set.paths ?? [],
          ...(sticky ? { sticky } : {}),
          ...(redirectHttps !== undefined && set.publish.some((p) => p.mode === 'http') ? { redirectHttps } : {}),
          ...(hsts ? { hsts: `max-age=${/^\d{1,10}$/.test(env.get('HSTS_MAX_AGE') ?? '') ? env.get('HSTS_MAX_AGE') : '31536000'}` } : {}),
          problems: [...httpProblems],
        }),
      });
    }
  } else if (env.has('VIRTUAL_HOST')) general.push('VIRTUAL_HOST: every SERVICE_PORTS port is a TCP port; the virtual hosts are not served');
  if (tcp.length) {
    drafts.push({
      base: 'tcp',
      from: fromOf('SERVICE_PORTS', 'TCP_PORTS'),
      labels: labelsOf({ ...common, problems: [...problems], publish: tcp.map((p) => ({ published: p, target: p, mode: 'tcp' as const })) }),
    });
  }
  return drafts;
}

// ---- entry -----------------------------------------------------------------

function hasCompat(service: SwarmService, kinds: readonly CompatKind[]): string[] {
  const found: string[] = [];
  if (kinds.includes('traefik')) for (const name of Object.keys(service.Spec.Labels ?? {})) if (name.startsWith('traefik.')) found.push(name);
  if (kinds.includes('dockercloud')) for (const e of service.Spec.TaskTemplate?.ContainerSpec?.Env ?? []) {
    const name = e.split('=', 1)[0]!;
    if (DOCKERCLOUD.has(name)) found.push(name);
  }
  return found;
}

/**
 * The route sets a service's compatibility labels ask for, after its own
 * meshd.* set `own`: none when `own` publishes (its compat labels are then a
 * notice), else one set per Traefik router or dockercloud/haproxy port group,
 * and a set without ports that carries the service-wide problems as notices.
 */
export function compatRouteSets(service: SwarmService, own: ServiceLabels, options: CompatOptions | undefined): RouteSet[] {
  if (!options?.kinds.length) return [];
  if (own.publish.length) {
    const found = hasCompat(service, options.kinds);
    if (!found.length) return [];
    return [{ labels: labelsOf({ problems: [`${found.join(', ')}: ignored, as the service has meshd.publish (its meshd.* labels win)`] }) }];
  }
  const general: string[] = [];
  const drafts: Draft[] = [];
  if (options.kinds.includes('traefik')) drafts.push(...traefik(service, options, own.health, general));
  if (options.kinds.includes('dockercloud')) {
    const dc = dockercloud(service, own.health, general);
    if (dc.length && drafts.length) general.push('SERVICE_PORTS: the service has Traefik labels too; its dockercloud/haproxy environment is ignored');
    else drafts.push(...dc);
  }
  return finish(drafts, general);
}
