// The Compiler keeps compile()'s table up to date across snapshots. It remembers
// what each service compiled to and compiles again only the services whose
// spec, running tasks, or the nodes and networks those tasks name have changed;
// port claims are settled again only on the ports whose claimants changed. Its
// table equals compile()'s for the same snapshot, a route spec that did not
// change is the same object as in the previous table, and each update says
// which routes changed, so that applying it costs what changed.
import type { SwarmService, SwarmSnapshot, SwarmTask } from '../discovery/snapshot.js';
import {
  byCreation, byPortName, clashNotice, compileContext, compileService, PortClaims,
  type CompileContext, type CompileOptions, type ServiceItem,
} from './compile.js';
import { routeKey, sameData, type Notice, type RouteChanges, type RouteSpec, type RoutingTable } from './spec.js';

/** A service's notice, or one of its routes with why it lost its port's claim (undefined: it won). */
type Entry = { notice: Notice; route?: undefined } | { route: RouteSpec; clash: string | undefined; notice?: undefined };

interface Compiled {
  service: SwarmService;
  /** Its running tasks, in snapshot order. */
  tasks: SwarmTask[];
  entries: Entry[];
  notices: Notice[];
  /** The update that last saw it in a snapshot. */
  seen: number;
  /** The update whose pass over the tasks counted `matched` and `fresh`. */
  pass: number;
  /** How many of `tasks` the snapshot has again, in the same places. */
  matched: number;
  /** Its running tasks in the snapshot, once they differ from `tasks`. */
  fresh: SwarmTask[] | undefined;
}

export interface CompilerUpdate {
  table: RoutingTable;
  /** What differs from the previous update's table (everything, the first time). */
  changes: RouteChanges;
}

const NO_TASKS: SwarmTask[] = [];

/**
 * Whether a service is the same as before. The engine bumps Version.Index on
 * every change to a service, so that stands for the whole; a service without
 * one (a hand-made snapshot) is compared whole.
 */
function sameService(a: SwarmService, b: SwarmService): boolean {
  if (a === b) return true;
  if (a.Version?.Index !== undefined && b.Version?.Index !== undefined) return a.Version.Index === b.Version.Index && a.UpdatedAt === b.UpdatedAt;
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Whether two running tasks compile alike, given the same nodes and networks. */
function sameTask(a: SwarmTask, b: SwarmTask): boolean {
  if (a === b) return true;
  if (a.ID !== b.ID || a.DesiredState !== b.DesiredState || a.Status.State !== b.Status.State || a.NodeID !== b.NodeID) return false;
  const x = a.NetworksAttachments ?? [];
  const y = b.NetworksAttachments ?? [];
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) {
    const [p, q] = [x[i]!, y[i]!];
    if (p.Network.ID !== q.Network.ID || p.Network.Spec?.Name !== q.Network.Spec?.Name || p.Addresses?.[0] !== q.Addresses?.[0]) return false;
  }
  return true;
}

/** Keys whose value differs between two maps, either way. */
function changedKeys(before: Map<string, string> | undefined, after: Map<string, string>): Set<string> {
  const changed = new Set<string>();
  if (!before) return changed;
  for (const [k, v] of after) if (before.get(k) !== v) changed.add(k);
  for (const k of before.keys()) if (!after.has(k)) changed.add(k);
  return changed;
}

function namesChanged(tasks: SwarmTask[], nodes: Set<string>, networks: Set<string>): boolean {
  if (!nodes.size && !networks.size) return false;
  return tasks.some((t) => (t.NodeID !== undefined && nodes.has(t.NodeID)) || (t.NetworksAttachments ?? []).some((a) => networks.has(a.Network.ID)));
}

function routesOf(entries: { route?: RouteSpec | undefined }[]): RouteSpec[] {
  return entries.flatMap((e) => (e.route ? [e.route] : []));
}

/** Whether routes claim alike; a service whose claims stay the same cannot change any port's winners. */
function sameClaims(x: RouteSpec[], y: RouteSpec[]): boolean {
  return x.length === y.length && x.every((r, n) => {
    const s = y[n]!;
    return r.name === s.name && r.port === s.port && r.mode === s.mode && sameData(r.hosts, s.hosts) && sameData(r.paths, s.paths);
  });
}

/**
 * A service's entries, its routes as they were where nothing changed (so the
 * table can tell them apart by identity), and their claims' outcomes carried
 * over when they claim alike (`keep`).
 */
function entriesOf(items: ServiceItem[], old: Entry[], keep: boolean): Entry[] {
  const was = new Map(old.flatMap((e) => (e.route ? [[routeKey(e.route), e.route] as const] : [])));
  const clashes = keep ? old.flatMap((e) => (e.route ? [e.clash] : [])) : [];
  let n = 0;
  return items.map((item) => {
    if (item.notice) return item;
    const prev = was.get(routeKey(item.route));
    return { route: prev && sameData(prev, item.route) ? prev : item.route, clash: clashes[n++] };
  });
}

/** Index of the first route not before `route` in table order. */
function position(routes: RouteSpec[], route: RouteSpec): number {
  let [lo, hi] = [0, routes.length];
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (byPortName(routes[mid]!, route) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class Compiler {
  readonly #options: CompileOptions;
  readonly #services = new Map<string, Compiled>();
  /** The services in creation order: the order in which they claim ports. */
  #order: Compiled[] = [];
  #routes: RouteSpec[] = [];
  #notices: Notice[] = [];
  #ctx: CompileContext | undefined;
  #update = 0;

  constructor(options: CompileOptions) {
    this.#options = options;
  }

  update(snapshot: SwarmSnapshot): CompilerUpdate {
    const seen = ++this.#update;
    const ctx = compileContext(snapshot, this.#options);
    const nodes = changedKeys(this.#ctx?.nodeNames, ctx.nodeNames);
    const networks = changedKeys(this.#ctx?.networkNames, ctx.networkNames);
    this.#ctx = ctx;
    const newcomers = this.#matchTasks(snapshot.tasks, seen);

    // Services compiled again, or whose claims came out otherwise, with their winners before.
    const touched = new Set<Compiled>();
    const before = new Map<string, RouteSpec>();
    const touch = (c: Compiled) => {
      if (touched.has(c)) return;
      touched.add(c);
      for (const e of c.entries) if (e.route && e.clash === undefined) before.set(routeKey(e.route), e.route);
    };
    const dirtyPorts = new Set<number>();
    const claimPorts = (c: Compiled) => { for (const e of c.entries) if (e.route) dirtyPorts.add(e.route.port); };
    const added: Compiled[] = [];
    let reorder = false;
    let noticesChanged = false;

    for (const service of snapshot.services) {
      let c = this.#services.get(service.ID);
      const matched = c?.pass === seen ? c.matched : 0;
      const own = !c ? newcomers.get(service.ID) ?? NO_TASKS : c.pass === seen && c.fresh ? c.fresh : matched === c.tasks.length ? c.tasks : c.tasks.slice(0, matched);
      if (c && own === c.tasks && sameService(c.service, service) && !namesChanged(own, nodes, networks)) {
        c.service = service;
        c.seen = seen;
        continue;
      }
      const items = compileService(service, own, ctx);
      if (!c) {
        c = { service, tasks: own, entries: entriesOf(items, [], false), notices: [], seen, pass: 0, matched: 0, fresh: undefined };
        this.#services.set(service.ID, c);
        added.push(c);
        touched.add(c);
        claimPorts(c);
        reorder = true;
        continue;
      }
      touch(c);
      const moved = byCreation(c.service, service) !== 0;
      const keep = !moved && sameClaims(routesOf(c.entries), routesOf(items));
      if (!keep) claimPorts(c);
      Object.assign(c, { service, tasks: own, entries: entriesOf(items, c.entries, keep), seen });
      if (!keep) claimPorts(c);
      reorder ||= moved;
    }

    for (const [id, c] of this.#services) {
      if (c.seen === seen) continue;
      touch(c);
      claimPorts(c);
      this.#services.delete(id);
      reorder = true;
    }
    if (reorder) {
      // The previous order, the new ones at its end: nearly sorted, so the sort costs little more than a pass.
      this.#order = [...this.#order.filter((c) => c.seen === seen), ...added].sort((a, b) => byCreation(a.service, b.service));
      noticesChanged = true;
    }
    this.#claim(dirtyPorts, touch);

    const after = new Map<string, RouteSpec>();
    for (const c of touched) {
      if (c.seen !== seen) continue;
      const notices: Notice[] = [];
      for (const e of c.entries) {
        if (e.notice) notices.push(e.notice);
        else if (e.clash !== undefined) notices.push(clashNotice(e.route, e.clash));
        else after.set(routeKey(e.route), e.route);
      }
      noticesChanged ||= !sameData(c.notices, notices);
      c.notices = notices;
    }
    if (noticesChanged) this.#notices = this.#order.flatMap((c) => c.notices);
    const changes = this.#replace(before, after);
    return { table: { routes: this.#routes.slice(), notices: this.#notices }, changes };
  }

  /**
   * One pass over the snapshot's running tasks, each held against the task in
   * its place among those its service was compiled with: a task that compiles
   * alike takes that place (so the newest objects are kept, not both), and a
   * service's tasks are copied only once they differ. Returns the tasks of
   * services not compiled yet.
   */
  #matchTasks(tasks: SwarmTask[], pass: number): Map<string, SwarmTask[]> {
    const newcomers = new Map<string, SwarmTask[]>();
    for (const task of tasks) {
      if (task.Status.State !== 'running') continue;
      const c = this.#services.get(task.ServiceID);
      if (!c) {
        const list = newcomers.get(task.ServiceID);
        if (list) list.push(task);
        else newcomers.set(task.ServiceID, [task]);
        continue;
      }
      if (c.pass !== pass) {
        c.pass = pass;
        c.matched = 0;
        c.fresh = undefined;
      }
      if (c.fresh) c.fresh.push(task);
      else if (c.matched < c.tasks.length && sameTask(c.tasks[c.matched]!, task)) c.tasks[c.matched++] = task;
      else c.fresh = [...c.tasks.slice(0, c.matched), task];
    }
    return newcomers;
  }

  /**
   * Settles the claims on the given ports again, in creation order: a port's
   * winners depend on nothing but the routes that claim it.
   */
  #claim(ports: Set<number>, touch: (c: Compiled) => void): void {
    if (!ports.size) return;
    const claims = new PortClaims();
    for (const c of this.#order) {
      for (const e of c.entries) {
        if (!e.route || !ports.has(e.route.port)) continue;
        const clash = claims.claim(e.route);
        if (clash === e.clash) continue;
        touch(c);
        e.clash = clash;
      }
    }
  }

  /** Puts the touched services' winners in place of those they had in the sorted routes; what changed. */
  #replace(before: Map<string, RouteSpec>, after: Map<string, RouteSpec>): RouteChanges {
    const changes: RouteChanges = new Map();
    for (const [key, route] of before) {
      if (after.has(key)) continue;
      this.#routes.splice(position(this.#routes, route), 1);
      changes.set(key, undefined);
    }
    const added: RouteSpec[] = [];
    for (const [key, route] of after) {
      const prev = before.get(key);
      if (prev === route) continue;
      changes.set(key, route);
      if (prev) this.#routes[position(this.#routes, route)] = route;
      else added.push(route);
    }
    // A few are put in place; many (a first table) are cheaper sorted in at once.
    if (added.length > 64) {
      for (const route of added) this.#routes.push(route);
      this.#routes.sort(byPortName);
    } else {
      for (const route of added) this.#routes.splice(position(this.#routes, route), 0, route);
    }
    return changes;
  }
}
