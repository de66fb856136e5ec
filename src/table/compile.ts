// compile(): a pure function from a swarm snapshot to a routing table. No I/O,
// no clock; the same snapshot always gives the same table. A malformed service
// becomes a notice or a route problem and never blanks the rest of the table.
import type { SwarmSnapshot, SwarmTask, SwarmService } from '../discovery/snapshot.js';
import { compatRouteSets, type CompatOptions } from './compat.js';
import { parseLabels, type ServiceLabels } from './labels.js';
import type { BackendSpec, CompileDefaults, HealthSpec, Mode, Notice, RouteSpec, RoutingTable } from './spec.js';

export interface CompileOptions {
  defaults: CompileDefaults;
  /** Network (name or ID) on which tasks are reached; overrides selfNetworks. */
  network?: string | undefined;
  /** Networks (names or IDs) meshd itself is attached to; empty: any network but ingress. */
  selfNetworks: string[];
  /** Whether this node has IPVS, which Docker's own routing mesh needs. */
  ipvs: boolean;
  /** --domain: HTTP routes without hosts answer `<service>.<domain>` (and without the stack prefix). */
  domain?: string | undefined;
  /** --compat: services without meshd.publish are also routed by their Traefik labels or dockercloud/haproxy environment. */
  compat?: CompatOptions | undefined;
}

/** One way a service asks to be routed: its own meshd.* labels, or a set mapped from compatibility labels. */
export interface RouteSet {
  labels: ServiceLabels;
  /** Added to the service name when a service has several sets: `web@api`. */
  suffix?: string;
  /** The labels or environment variables the set was made from. */
  from?: string[];
  /** Answers any host on purpose (dockercloud/haproxy's default backend): --domain gives it no host. */
  anyHost?: boolean;
}

const INGRESS = 'ingress';

function stripCidr(address: string): string {
  const slash = address.indexOf('/');
  return slash < 0 ? address : address.slice(0, slash);
}

/** The task's address on the first network meshd can reach it on. */
function taskAddress(task: SwarmTask, allowed: Set<string> | null, networkNames: Map<string, string>): string | undefined {
  for (const att of task.NetworksAttachments ?? []) {
    const id = att.Network.ID;
    const name = att.Network.Spec?.Name ?? networkNames.get(id) ?? id;
    // Ingress addresses are Docker's own mesh (IPVS): never a backend for meshd.
    const ok = name !== INGRESS && (!allowed || allowed.has(id) || allowed.has(name));
    const addr = att.Addresses?.[0];
    if (ok && addr) return stripCidr(addr);
  }
  return undefined;
}

function isDraining(task: SwarmTask): boolean {
  return task.Status.State === 'running' && (task.DesiredState === 'shutdown' || task.DesiredState === 'remove');
}

function isServing(task: SwarmTask): boolean {
  return task.Status.State === 'running' && task.DesiredState === 'running';
}

function ingressPorts(service: SwarmService): { published: number; target: number }[] {
  const ports = service.Endpoint?.Ports ?? service.Spec.EndpointSpec?.Ports ?? [];
  return ports
    .filter((p) => (p.PublishMode ?? 'ingress') === 'ingress' && p.PublishedPort)
    .map((p) => ({ published: p.PublishedPort!, target: p.TargetPort ?? p.PublishedPort! }));
}

/**
 * A route's health settings: its own over the defaults. A timeout it does not set
 * follows a shorter interval silently; one it sets above its interval is a
 * contradiction, reported as a problem named `timeoutName`, and the interval is used.
 */
export function routeHealth(defaults: HealthSpec, given: Partial<HealthSpec>, timeoutName: string, problems: string[]): HealthSpec {
  const health: HealthSpec = { ...defaults, ...given };
  if (health.timeout > health.interval) {
    if (given.timeout !== undefined) problems.push(`${timeoutName} (${health.timeout}ms) exceeds the interval (${health.interval}ms); the interval is used as timeout`);
    health.timeout = health.interval;
  }
  return health;
}

export function byCreation(a: SwarmService, b: SwarmService): number {
  return (a.CreatedAt ?? '').localeCompare(b.CreatedAt ?? '') || a.Spec.Name.localeCompare(b.Spec.Name);
}

/**
 * Who holds what on each published port: an L4 port belongs to one route; an
 * L7 port is shared by (host, path) pairs, where a route without hosts stands
 * for any host and one without paths for every path. Checked with maps, so
 * claiming n routes costs O(n), whatever the number on one port.
 */
export class PortClaims {
  readonly #ports = new Map<number, { mode: Mode; owner: string; pairs: Map<string, string> }>();

  /** Claims the route's pairs, or says why it may not share its port (and claims nothing). */
  claim(route: Pick<RouteSpec, 'name' | 'mode' | 'port' | 'hosts' | 'paths'>): string | undefined {
    const { port, mode, name } = route;
    const held = this.#ports.get(port);
    if (held && held.mode !== mode) return `port ${port} is already served as ${held.mode} by ${held.owner}`;
    if (held && mode === 'tcp') return `port ${port} is already served by ${held.owner} (an L4 port carries one service; use /http with meshd.hosts to share a port)`;
    const hosts = route.hosts.length ? route.hosts : ['*'];
    const paths = route.paths?.length ? route.paths : [''];
    const keys = hosts.flatMap((h) => paths.map((p) => `${h} ${p}`));
    for (const key of keys) {
      const other = held?.pairs.get(key);
      if (other === undefined) continue;
      const [host, path] = key.split(' ') as [string, string];
      if (path) return `path ${path} of ${host === '*' ? 'any host' : `host ${host}`} on port ${port} is already served by ${other}`;
      if (host === '*') return `port ${port} is already served by ${other} for any host; set meshd.hosts on both to share the port`;
      return `host ${host} on port ${port} is already served by ${other}`;
    }
    const entry = held ?? { mode, owner: name, pairs: new Map<string, string>() };
    for (const key of keys) entry.pairs.set(key, name);
    this.#ports.set(port, entry);
    return undefined;
  }
}

/** `<service>.<domain>`, and without the stack's prefix (`demo_counter` → `counter.<domain>`) for stack services. */
function domainHosts(service: SwarmService, domain: string): string[] {
  const name = service.Spec.Name.toLowerCase();
  const stack = service.Spec.Labels?.['com.docker.stack.namespace']?.toLowerCase();
  const short = stack && name.startsWith(`${stack}_`) ? name.slice(stack.length + 1) : undefined;
  return [...(short ? [`${short}.${domain}`] : []), `${name}.${domain}`];
}

/** The route sets of a service: its meshd.* labels, then what --compat maps from other labels. */
function routeSets(service: SwarmService, compat: CompatOptions | undefined): RouteSet[] {
  const own = parseLabels(service.Spec.Labels);
  return [{ labels: own }, ...compatRouteSets(service, own, compat)];
}

/** What compiling one service needs besides the service and its tasks. */
export interface CompileContext {
  options: CompileOptions;
  networkNames: Map<string, string>;
  nodeNames: Map<string, string>;
  allowed: Set<string> | null;
  networkLabel: string;
}

export function compileContext(snapshot: SwarmSnapshot, options: CompileOptions): CompileContext {
  const allowedList = options.network ? [options.network] : options.selfNetworks;
  return {
    options,
    networkNames: new Map(snapshot.networks.map((n) => [n.Id, n.Name])),
    nodeNames: new Map(snapshot.nodes.map((n) => [n.ID, n.Description?.Hostname ?? n.ID])),
    allowed: allowedList.length ? new Set(allowedList) : null,
    networkLabel: allowedList.length ? `network ${allowedList.join(' or ')}` : 'a network meshd shares with it',
  };
}

/** Running tasks by service, in snapshot order: no other task can be a backend. */
export function runningTasksByService(tasks: SwarmTask[]): Map<string, SwarmTask[]> {
  const byService = new Map<string, SwarmTask[]>();
  for (const task of tasks) {
    if (task.Status.State !== 'running') continue;
    const list = byService.get(task.ServiceID);
    if (list) list.push(task);
    else byService.set(task.ServiceID, [task]);
  }
  return byService;
}

/** What one service contributes, in order: notices, and routes that have yet to claim their port. */
export type ServiceItem = { notice: Notice; route?: undefined } | { route: RouteSpec; notice?: undefined };

/** One service's notices and candidate routes; depends on nothing but the service, its tasks and the context. */
export function compileService(service: SwarmService, tasks: SwarmTask[], ctx: CompileContext): ServiceItem[] {
  const { options, networkNames, nodeNames, allowed, networkLabel } = ctx;
  const items: ServiceItem[] = [];
  const serviceName = service.Spec.Name;
  for (const p of ingressPorts(service)) {
    const mesh = options.ipvs
      ? 'Docker\'s ingress routing mesh serves it, not meshd'
      : 'Docker\'s ingress routing mesh owns it, and this node has no IPVS (/proc/net/ip_vs is missing), so it answers nothing here';
    items.push({ notice: {
      service: serviceName,
      port: p.published,
      message: `port ${p.published} is published the standard way (ingress mode): ${mesh}. To serve it with meshd, remove the published port and add the service label meshd.publish=${p.published}:${p.target} and the meshd network`,
    } });
  }
  for (const set of routeSets(service, options.compat)) {
    const name = set.suffix ? `${serviceName}@${set.suffix}` : serviceName;
    const { labels } = set;
    if (labels.publish.length === 0) {
      for (const problem of labels.problems) items.push({ notice: { service: name, message: problem } });
      continue;
    }

    const routeProblems = [...labels.problems];
    const health = routeHealth(options.defaults.health, labels.health, 'meshd.health.timeout', routeProblems);

    for (const pub of labels.publish) {
      const problems = [...routeProblems];
      if (labels.hosts.length && pub.mode === 'tcp') problems.push(`meshd.hosts applies to /http and /https ports only; port ${pub.published} is tcp`);
      if (labels.proxyProtocol && pub.mode !== 'tcp') problems.push(`meshd.proxy-protocol applies to tcp ports only; port ${pub.published} is ${pub.mode}`);
      if (labels.backend === 'h2c' && pub.mode === 'tcp') problems.push(`meshd.backend=h2c applies to /http and /https ports only; port ${pub.published} is tcp and pipes bytes`);
      if (labels.idleTimeout !== undefined && pub.mode !== 'tcp') problems.push(`meshd.idle-timeout applies to tcp ports only; port ${pub.published} is ${pub.mode} (see --client-idle-timeout)`);
      const l7 = pub.mode !== 'tcp';
      const hosts = !l7 ? [] : labels.hosts.length || !options.domain || set.anyHost ? labels.hosts : domainHosts(service, options.domain);
      // meshd.tls=acme on a service that also serves plain HTTP (for the challenge or a redirect) concerns its https ports.
      const acme = labels.acme === true && pub.mode === 'https' && hosts.length > 0;
      if (labels.acme && pub.mode === 'https' && !hosts.length) problems.push(`meshd.tls=acme needs meshd.hosts: without host names there is nothing to order a certificate for; port ${pub.published} is served with certificates from files`);
      if (labels.acme && !labels.publish.some((other) => other.mode === 'https')) problems.push(`meshd.tls=acme applies to /https ports only; port ${pub.published} is ${pub.mode}`);
      const backends: BackendSpec[] = [];
      for (const task of tasks) {
        const draining = isDraining(task);
        if (!draining && !isServing(task)) continue;
        const node = task.NodeID ? nodeNames.get(task.NodeID) : undefined;
        const host = taskAddress(task, allowed, networkNames);
        if (!host) {
          problems.push(`task ${task.ID.slice(0, 12)}${node ? ` on ${node}` : ''} has no address on ${networkLabel}; attach the service to that network`);
          continue;
        }
        backends.push({ id: task.ID, host, port: pub.target, ...(node ? { node } : {}), draining });
      }
      backends.sort((a, b) => a.id.localeCompare(b.id));
      if (!l7) {
        if (labels.paths.length) problems.push(`meshd.paths applies to /http and /https ports only; port ${pub.published} is tcp`);
        if (labels.sticky) problems.push(`meshd.sticky applies to /http and /https ports only; port ${pub.published} is tcp`);
      }
      if (labels.stripPrefix && !labels.paths.length) problems.push('meshd.strip-prefix needs meshd.paths: there is no prefix to strip');
      const route: RouteSpec = {
        name,
        mode: pub.mode,
        port: pub.published,
        hosts,
        ...(l7 && labels.paths.length ? { paths: labels.paths, ...(labels.stripPrefix ? { stripPrefix: true } : {}) } : {}),
        ...(labels.lb && labels.lb !== 'round-robin' ? { lb: labels.lb } : {}),
        ...(l7 && labels.sticky ? { sticky: { cookie: labels.sticky } } : {}),
        ...(set.from ? { from: set.from } : {}),
        health,
        backends,
        proxyProtocol: pub.mode === 'tcp' && labels.proxyProtocol,
        ...(labels.maxConnections !== undefined ? { maxConnections: labels.maxConnections } : {}),
        ...(labels.idleTimeout !== undefined && pub.mode === 'tcp' ? { idleTimeout: labels.idleTimeout } : {}),
        ...(pub.mode === 'http' && labels.redirectHttps !== undefined ? { redirectHttps: labels.redirectHttps } : {}),
        ...(pub.mode === 'https' && labels.hsts ? { hsts: labels.hsts } : {}),
        ...(acme ? { acme } : {}),
        ...(labels.backend === 'h2c' && l7 ? { backend: 'h2c' as const } : {}),
        problems,
      };
      items.push({ route });
    }
  }
  return items;
}

/** The notice of a route that lost its port's claim. */
export function clashNotice(route: RouteSpec, clash: string): Notice {
  return { service: route.name, port: route.port, message: `not served: ${clash}` };
}

/** Routing table order: by port, then name. */
export function byPortName(a: RouteSpec, b: RouteSpec): number {
  return a.port - b.port || a.name.localeCompare(b.name);
}

export function compile(snapshot: SwarmSnapshot, options: CompileOptions): RoutingTable {
  const ctx = compileContext(snapshot, options);
  const tasks = runningTasksByService(snapshot.tasks);
  const routes: RouteSpec[] = [];
  const notices: Notice[] = [];
  const claims = new PortClaims();
  for (const service of [...snapshot.services].sort(byCreation)) {
    for (const item of compileService(service, tasks.get(service.ID) ?? [], ctx)) {
      if (item.notice) {
        notices.push(item.notice);
        continue;
      }
      const clash = claims.claim(item.route);
      if (clash) notices.push(clashNotice(item.route, clash));
      else routes.push(item.route);
    }
  }
  routes.sort(byPortName);
  return { routes, notices };
}
