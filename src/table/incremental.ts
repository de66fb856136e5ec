// The Compiler keeps compile()'s table up to date across snapshots. It remembers
// what each service compiled to and compiles again only the services whose
// spec, running tasks, or the nodes and networks those tasks name have changed;
// port claims are settled again only on the ports whose claimants changed. Its
// table equals compile()'s for the same snapshot, a route spec that did not
// change is the same object as in the previous table, and each update says
// which routes changed, so that applying it costs what changed.
//
// It is fed either whole snapshots (update), which it compares with what it
// compiled before, or what changed since the last one (change: a peer's
// delta, or what discovery saw move), which costs what changed alone.
import type { SwarmChange, SwarmNetwork, SwarmNode, SwarmService, SwarmSnapshot, SwarmTask } from '../discovery/snapshot.js';
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
  /** Gone from the swarm. */
  gone: boolean;
  /** The update whose pass over the tasks counted `matched` and `fresh`. */
  pass: number;
  /** How many of `tasks` the snapshot has again, in the same places. */
  matched: number;
  /** Its running tasks in the snapshot, once they differ from `tasks`. */
  fresh: SwarmTask[] | undefined;
}

export interface CompilerUpdate {
  table: RoutingTable;
  /**
   * What differs from the previous update's table (everything, the first
   * time); undefined after a failed compile or a reset, when the compiler no
   * longer knows what the live table holds and the caller must compare.
   */
  changes: RouteChanges | undefined;
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

/** Whether two lists of running tasks compile alike, place by place. */
function sameTasks(a: SwarmTask[], b: SwarmTask[]): boolean {
  return a.length === b.length && a.every((t, i) => sameTask(t, b[i]!));
}

/** A task of the current snapshot, its place in snapshot order, and the update that last saw it. */
interface Held {
  task: SwarmTask;
  seq: number;
  seen: number;
}

/** One update's work: the services compiled again or whose claims came out otherwise, their winners before, the ports to settle again. */
class Pass {
  readonly touched = new Set<Compiled>();
  readonly before = new Map<string, RouteSpec>();
  readonly dirtyPorts = new Set<number>();
  readonly added: Compiled[] = [];
  reorder = false;

  constructor(readonly seen: number, readonly ctx: CompileContext) {}

  touch(c: Compiled): void {
    if (this.touched.has(c)) return;
    this.touched.add(c);
    for (const e of c.entries) if (e.route && e.clash === undefined) this.before.set(routeKey(e.route), e.route);
  }

  claimPorts(c: Compiled): void {
    for (const e of c.entries) if (e.route) this.dirtyPorts.add(e.route.port);
  }
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
  /** Every task of the current snapshot by ID, and by service in snapshot order: what a change is applied to. */
  #tasks = new Map<string, Held>();
  #byService = new Map<string, Map<string, Held>>();
  #seq = 0;
  #nodes: SwarmNode[] = [];
  #networks: SwarmNetwork[] = [];
  /** After reset(): what the live table holds is unknown until the next whole snapshot. */
  #unknown = false;

  constructor(options: CompileOptions) {
    this.#options = options;
  }

  /**
   * Forgets everything compiled: after a compile that threw part-way, or a
   * table its caller could not take. The next whole snapshot is compiled
   * afresh, and changes are refused until then.
   */
  reset(): void {
    this.#services.clear();
    this.#order = [];
    this.#routes = [];
    this.#notices = [];
    this.#ctx = undefined;
    this.#tasks = new Map();
    this.#byService = new Map();
    this.#nodes = [];
    this.#networks = [];
    this.#unknown = true;
  }

  /** The table for a whole snapshot, compared with the one before. */
  update(snapshot: SwarmSnapshot): CompilerUpdate {
    try {
      const u = this.#updateFrom(snapshot);
      if (!this.#unknown) return u;
      this.#unknown = false;
      return { table: u.table, changes: undefined };
    } catch (err) {
      this.reset();
      throw err;
    }
  }

  /**
   * The table after a change to the snapshot last compiled (by update, or
   * by changes since): only the services it names, or whose tasks it names,
   * are looked at again (all of them when nodes or networks changed).
   */
  change(change: SwarmChange): CompilerUpdate {
    if (!this.#ctx) throw new Error('a change with no whole snapshot compiled before it');
    try {
      return this.#changeFrom(change);
    } catch (err) {
      this.reset();
      throw err;
    }
  }

  #updateFrom(snapshot: SwarmSnapshot): CompilerUpdate {
    const seen = ++this.#update;
    const names = this.#names(snapshot.nodes, snapshot.networks);
    const p = new Pass(seen, this.#ctx!);
    const newcomers = this.#matchTasks(snapshot.tasks, seen);
    for (const service of snapshot.services) {
      const c = this.#services.get(service.ID);
      const matched = c?.pass === seen ? c.matched : 0;
      const own = !c ? newcomers.get(service.ID) ?? NO_TASKS : c.pass === seen && c.fresh ? c.fresh : matched === c.tasks.length ? c.tasks : c.tasks.slice(0, matched);
      if (c && own === c.tasks && sameService(c.service, service) && !namesChanged(own, names.nodes, names.networks)) {
        c.service = service;
        c.seen = seen;
        continue;
      }
      this.#compile(p, c, service, own);
    }
    for (const c of this.#services.values()) if (c.seen !== seen) this.#remove(p, c);
    this.#index(snapshot.tasks, seen);
    return this.#finish(p);
  }

  #changeFrom(change: SwarmChange): CompilerUpdate {
    const seen = ++this.#update;
    const names = change.nodes || change.networks
      ? this.#names(change.nodes ?? this.#nodes, change.networks ?? this.#networks)
      : { nodes: new Set<string>(), networks: new Set<string>() };
    const p = new Pass(seen, this.#ctx!);
    // Services whose tasks may differ.
    const dirty = new Set<string>();
    for (const id of change.removedTasks) {
      const held = this.#tasks.get(id);
      if (!held) continue;
      this.#tasks.delete(id);
      this.#unhold(held);
      dirty.add(held.task.ServiceID);
    }
    for (const task of change.tasks) {
      const held = this.#tasks.get(task.ID);
      if (!held) {
        this.#hold(task);
        dirty.add(task.ServiceID);
        continue;
      }
      dirty.add(held.task.ServiceID);
      dirty.add(task.ServiceID);
      if (held.task.ServiceID === task.ServiceID) {
        held.task = task;
        continue;
      }
      // Moved to another service (the engine never does it): it keeps its place among the tasks of its new one.
      this.#unhold(held);
      held.task = task;
      this.#hold(task, held);
    }
    for (const id of change.removedServices) {
      const c = this.#services.get(id);
      if (c) this.#remove(p, c);
    }
    const services = new Map(change.services.map((s) => [s.ID, s]));
    for (const id of dirty) if (!services.has(id) && this.#services.has(id)) services.set(id, this.#services.get(id)!.service);
    if (names.nodes.size || names.networks.size) {
      for (const c of this.#services.values()) if (!services.has(c.service.ID) && namesChanged(c.tasks, names.nodes, names.networks)) services.set(c.service.ID, c.service);
    }
    for (const service of services.values()) {
      const c = this.#services.get(service.ID);
      const own = this.#running(service.ID);
      if (c && sameTasks(c.tasks, own) && sameService(c.service, service) && !namesChanged(own, names.nodes, names.networks)) {
        c.service = service;
        c.tasks = own;
        continue;
      }
      this.#compile(p, c, service, own);
    }
    return this.#finish(p);
  }

  /** A new compile context for these nodes and networks; the IDs whose names changed. */
  #names(nodes: SwarmNode[], networks: SwarmNetwork[]): { nodes: Set<string>; networks: Set<string> } {
    const ctx = compileContext({ services: [], tasks: [], nodes, networks }, this.#options);
    const changed = { nodes: changedKeys(this.#ctx?.nodeNames, ctx.nodeNames), networks: changedKeys(this.#ctx?.networkNames, ctx.networkNames) };
    this.#ctx = ctx;
    this.#nodes = nodes;
    this.#networks = networks;
    return changed;
  }

  /**
   * Brings the tasks held to a whole snapshot's: each in its place, new ones
   * last, those it lacks let go; held anew in its order when it has them in
   * another (which a follower's mirror and discovery never do).
   */
  #index(tasks: SwarmTask[], seen: number): void {
    let last = -1;
    let inOrder = true;
    let kept = 0;
    const had = this.#tasks.size;
    for (const task of tasks) {
      let held = this.#tasks.get(task.ID);
      if (!held) this.#hold(task, (held = { task, seq: this.#seq++, seen }));
      else if (held.seen !== seen) kept++;
      if (held.task !== task) {
        if (held.task.ServiceID === task.ServiceID) held.task = task;
        else {
          this.#unhold(held);
          held.task = task;
          this.#hold(task, held);
        }
      }
      if (held.seq <= last) inOrder = false;
      last = held.seq;
      held.seen = seen;
    }
    if (!inOrder) {
      this.#tasks = new Map();
      this.#byService = new Map();
      for (const task of tasks) this.#hold(task);
      return;
    }
    if (kept === had) return;
    for (const held of this.#tasks.values()) {
      if (held.seen === seen) continue;
      this.#tasks.delete(held.task.ID);
      this.#unhold(held);
    }
  }

  /** Holds a task last in snapshot order, or in the place `held` had. */
  #hold(task: SwarmTask, held: Held = { task, seq: this.#seq++, seen: this.#update }): void {
    this.#tasks.set(task.ID, held);
    let own = this.#byService.get(task.ServiceID);
    if (!own) this.#byService.set(task.ServiceID, (own = new Map()));
    own.set(task.ID, held);
    if (held.seq < this.#seq - 1 && own.size > 1) this.#byService.set(task.ServiceID, new Map([...own].sort((a, b) => a[1].seq - b[1].seq)));
  }

  #unhold(held: Held): void {
    const own = this.#byService.get(held.task.ServiceID);
    own?.delete(held.task.ID);
    if (own?.size === 0) this.#byService.delete(held.task.ServiceID);
  }

  /** A service's running tasks, in snapshot order. */
  #running(service: string): SwarmTask[] {
    const own = this.#byService.get(service);
    if (!own) return NO_TASKS;
    const tasks: SwarmTask[] = [];
    for (const { task } of own.values()) if (task.Status.State === 'running') tasks.push(task);
    return tasks;
  }

  /** Compiles a service (new, or changed) again with its running tasks. */
  #compile(p: Pass, c: Compiled | undefined, service: SwarmService, own: SwarmTask[]): void {
    const items = compileService(service, own, p.ctx);
    if (!c) {
      c = { service, tasks: own, entries: entriesOf(items, [], false), notices: [], seen: p.seen, gone: false, pass: 0, matched: 0, fresh: undefined };
      this.#services.set(service.ID, c);
      p.added.push(c);
      p.touched.add(c);
      p.claimPorts(c);
      p.reorder = true;
      return;
    }
    p.touch(c);
    const moved = byCreation(c.service, service) !== 0;
    const keep = !moved && sameClaims(routesOf(c.entries), routesOf(items));
    if (!keep) p.claimPorts(c);
    Object.assign(c, { service, tasks: own, entries: entriesOf(items, c.entries, keep), seen: p.seen });
    if (!keep) p.claimPorts(c);
    p.reorder ||= moved;
  }

  #remove(p: Pass, c: Compiled): void {
    p.touch(c);
    p.claimPorts(c);
    c.gone = true;
    this.#services.delete(c.service.ID);
    p.reorder = true;
  }

  /** Settles the claims, notices and sorted routes that the pass's services change. */
  #finish(p: Pass): CompilerUpdate {
    let noticesChanged = false;
    if (p.reorder) {
      // The previous order, the new ones at its end: nearly sorted, so the sort costs little more than a pass.
      this.#order = [...this.#order.filter((c) => !c.gone), ...p.added].sort((a, b) => byCreation(a.service, b.service));
      noticesChanged = true;
    }
    this.#claim(p.dirtyPorts, (c) => p.touch(c));

    const after = new Map<string, RouteSpec>();
    for (const c of p.touched) {
      if (c.gone) continue;
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
    const changes = this.#replace(p.before, after);
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
