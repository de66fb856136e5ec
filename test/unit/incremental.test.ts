// The incremental Compiler against compile(), over random sequences of swarm
// changes: after every step its table equals a full compile of the snapshot,
// and a Table fed its changes serves what a fresh Table given the full table does;
// the same when it is handed each change alone, as a peer's delta says it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import type { SwarmChange, SwarmNetwork, SwarmNode, SwarmService, SwarmSnapshot, SwarmTask, TaskState } from '../../src/discovery/snapshot.js';
import { compile, type CompileOptions } from '../../src/table/compile.js';
import { Compiler } from '../../src/table/incremental.js';
import { Table, routeOf } from '../../src/table/table.js';

const options: CompileOptions = { defaults: { health: { interval: 2000, timeout: 1000, rise: 2, fall: 3 } }, selfNetworks: ['meshd'], ipvs: false };

const NAMES = ['web', 'api', 'db', 'Web', 'shop_web', 'a-b', 'a.b', 'cache'];
const HOSTS = ['a.test', 'b.test', 'A.test'];
const PATHS = ['/api', '/api/v2', '/'];
const CREATED = ['2026-01-01T00:00:01Z', '2026-01-01T00:00:02Z', undefined];
const NODES = ['n1', 'n2', 'n3'];
const NETWORKS = ['net-meshd', 'net-other', 'net-ingress'];
const ADDRS = ['10.0.1.1/24', '10.0.1.2/24', '10.0.2.1/24'];

const labels = fc.record({
  'meshd.publish': fc.constantFrom('80:80', '80:80/http', '80:8080/http', '81:80', '443:80/https', '80:80/http,443:80/https', 'bad'),
  'meshd.hosts': fc.subarray(HOSTS).map((h) => h.join(',')),
  'meshd.paths': fc.subarray(PATHS).map((p) => p.join(',')),
  'meshd.lb': fc.constantFrom('least-conn', 'p2c', 'nonsense'),
  'meshd.backend': fc.constantFrom('h2c', 'http1'),
  'traefik.http.routers.r.rule': fc.constantFrom('Host(`a.test`)', 'PathPrefix(`/api`)', 'Host(`b.test`) || Path(`/x`)'),
}, { requiredKeys: [] }).map((l) => Object.fromEntries(Object.entries(l).filter(([, v]) => v !== '')) as Record<string, string>);

const serviceSpec = fc.record({
  labels,
  created: fc.constantFrom(...CREATED),
  versioned: fc.boolean(),
  ingress: fc.boolean(),
});

const taskSpec = fc.record({
  state: fc.constantFrom<TaskState>('running', 'running', 'starting', 'shutdown'),
  desired: fc.constantFrom<TaskState>('running', 'running', 'shutdown'),
  node: fc.option(fc.constantFrom(...NODES), { nil: undefined }),
  net: fc.option(fc.constantFrom(...NETWORKS), { nil: undefined }),
  named: fc.boolean(),
  addr: fc.constantFrom(...ADDRS),
});
type TaskSpec = typeof taskSpec extends fc.Arbitrary<infer T> ? T : never;

const step = fc.oneof(
  fc.record({ kind: fc.constant('addService' as const), spec: serviceSpec, name: fc.nat() }),
  fc.record({ kind: fc.constant('removeService' as const), i: fc.nat() }),
  fc.record({ kind: fc.constant('relabel' as const), i: fc.nat(), labels }),
  fc.record({ kind: fc.constant('rename' as const), i: fc.nat(), name: fc.nat() }),
  fc.record({ kind: fc.constant('recreate' as const), i: fc.nat(), created: fc.constantFrom(...CREATED) }),
  fc.record({ kind: fc.constant('addTask' as const), i: fc.nat(), spec: taskSpec }),
  fc.record({ kind: fc.constant('removeTask' as const), i: fc.nat() }),
  fc.record({ kind: fc.constant('taskState' as const), i: fc.nat(), state: taskSpec.map((t) => [t.state, t.desired] as const) }),
  fc.record({ kind: fc.constant('taskAddress' as const), i: fc.nat(), addr: fc.constantFrom(...ADDRS), net: fc.constantFrom(...NETWORKS) }),
  fc.record({ kind: fc.constant('renameNode' as const), i: fc.nat(), host: fc.constantFrom('alpha', 'beta', 'gamma', '') }),
  fc.record({ kind: fc.constant('renameNetwork' as const), i: fc.nat(), name: fc.constantFrom('meshd', 'other', 'ingress', 'renamed') }),
  fc.record({ kind: fc.constant('moveTask' as const), i: fc.nat(), to: fc.nat() }),
  fc.record({ kind: fc.constant('clone' as const) }),
);
type Step = typeof step extends fc.Arbitrary<infer T> ? T : never;

let ids = 0;

type ServiceSpec = typeof serviceSpec extends fc.Arbitrary<infer T> ? T : never;

function makeService(spec: ServiceSpec, name: string): SwarmService {
  return {
    ID: `s${ids++}`, Spec: { Name: name, Labels: spec.labels },
    ...(spec.created ? { CreatedAt: spec.created } : {}),
    ...(spec.versioned ? { Version: { Index: 1 }, UpdatedAt: 'u1' } : {}),
    ...(spec.ingress ? { Endpoint: { Ports: [{ PublishedPort: 8000, TargetPort: 80 }] } } : {}),
  };
}

/** A changed service, its version bumped as the engine does. */
function changed(s: SwarmService, spec: Partial<SwarmService['Spec']>, rest: Partial<SwarmService> = {}): SwarmService {
  const version = s.Version?.Index === undefined ? {} : { Version: { Index: s.Version.Index + 1 }, UpdatedAt: `u${s.Version.Index + 1}` };
  return { ...s, ...rest, Spec: { ...s.Spec, ...spec }, ...version };
}

function makeTask(t: TaskSpec, serviceId: string): SwarmTask {
  return {
    ID: `t${ids++}`, ServiceID: serviceId, DesiredState: t.desired, Status: { State: t.state }, ...(t.node ? { NodeID: t.node } : {}),
    NetworksAttachments: t.net ? [{ Network: { ID: t.net, ...(t.named ? { Spec: { Name: t.net.slice(4) } } : {}) }, Addresses: [t.addr] }] : [],
  };
}

const pick = <T>(xs: T[], i: number): T | undefined => (xs.length ? xs[i % xs.length] : undefined);
const replace = <T>(xs: T[], from: T, to: T): T[] => xs.map((x) => (x === from ? to : x));

/** The snapshot after one step; what did not change stays the same objects, but for `clone`. */
function next(s: SwarmSnapshot, st: Step): SwarmSnapshot {
  const unused = (n: number) => NAMES.filter((name) => !s.services.some((x) => x.Spec.Name === name))[n % NAMES.length];
  switch (st.kind) {
    case 'addService': {
      const name = unused(st.name);
      return name ? { ...s, services: [...s.services, makeService(st.spec, name)] } : s;
    }
    case 'removeService': {
      const svc = pick(s.services, st.i);
      return { ...s, services: s.services.filter((x) => x !== svc) };
    }
    case 'relabel': {
      const svc = pick(s.services, st.i);
      return svc ? { ...s, services: replace(s.services, svc, changed(svc, { Labels: st.labels })) } : s;
    }
    case 'rename': {
      const svc = pick(s.services, st.i);
      const name = unused(st.name);
      return svc && name ? { ...s, services: replace(s.services, svc, changed(svc, { Name: name })) } : s;
    }
    case 'recreate': {
      const svc = pick(s.services, st.i);
      if (!svc) return s;
      const { CreatedAt: _, ...rest } = changed(svc, {});
      return { ...s, services: replace(s.services, svc, st.created ? { ...rest, CreatedAt: st.created } : rest) };
    }
    case 'addTask': {
      const svc = pick(s.services, st.i);
      return { ...s, tasks: [...s.tasks, makeTask(st.spec, svc?.ID ?? 'gone')] };
    }
    case 'removeTask': {
      const t = pick(s.tasks, st.i);
      return { ...s, tasks: s.tasks.filter((x) => x !== t) };
    }
    case 'taskState': {
      const t = pick(s.tasks, st.i);
      return t ? { ...s, tasks: replace(s.tasks, t, { ...t, Status: { State: st.state[0] }, DesiredState: st.state[1] }) } : s;
    }
    case 'taskAddress': {
      const t = pick(s.tasks, st.i);
      return t ? { ...s, tasks: replace(s.tasks, t, { ...t, NetworksAttachments: [{ Network: { ID: st.net }, Addresses: [st.addr] }] }) } : s;
    }
    case 'moveTask': {
      const t = pick(s.tasks, st.i);
      const svc = pick(s.services, st.to);
      return t && svc ? { ...s, tasks: replace(s.tasks, t, { ...t, ServiceID: svc.ID }) } : s;
    }
    case 'renameNode': {
      const n = pick(s.nodes, st.i)!;
      const renamed: SwarmNode = st.host ? { ID: n.ID, Description: { Hostname: st.host } } : { ID: n.ID };
      return { ...s, nodes: replace(s.nodes, n, renamed) };
    }
    case 'renameNetwork': {
      const n = pick(s.networks, st.i)!;
      const renamed: SwarmNetwork = { ...n, Name: st.name };
      return { ...s, networks: replace(s.networks, n, renamed) };
    }
    case 'clone':
      return structuredClone(s);
  }
}

/** What a table serves, as the proxy would find it: routes by key with their backends, and each port's answer to a few requests. */
function served(t: Table): unknown {
  const routes = [...t.routes].map(([key, r]) => [key, r.spec, [...r.backends.keys()].sort()] as const).sort((a, b) => a[0].localeCompare(b[0]));
  const ports = [...t.ports].sort((a, b) => a[0] - b[0]).map(([port, e]) => {
    const key = (r: { spec: { port: number; name: string } } | undefined) => r && `${r.spec.port} ${r.spec.name}`;
    const answers = [undefined, ...HOSTS.map((h) => h.toLowerCase()), 'other.test'].flatMap((h) => ['/', '/api/x', '/api/v2', '/x'].map((p) => key(routeOf(e, h, p))));
    return { port, mode: e.mode, h2c: e.h2c, default: key(e.default), answers };
  });
  return { routes, ports, notices: t.notices };
}

const initial = fc.record({
  services: fc.array(fc.tuple(serviceSpec, fc.nat()), { maxLength: 5 }),
  tasks: fc.array(fc.tuple(taskSpec, fc.nat()), { maxLength: 12 }),
});

function first(init: typeof initial extends fc.Arbitrary<infer T> ? T : never): SwarmSnapshot {
  let snapshot: SwarmSnapshot = {
    services: [], tasks: [],
    nodes: NODES.map((id, i) => ({ ID: id, Description: { Hostname: `node${i}` } })),
    networks: NETWORKS.map((id) => ({ Id: id, Name: id.slice(4) })),
  };
  for (const [spec, n] of init.services) snapshot = next(snapshot, { kind: 'addService', spec, name: n });
  for (const [spec, i] of init.tasks) snapshot = next(snapshot, { kind: 'addTask', spec, i });
  return snapshot;
}

/**
 * The change from `a` to `b` as a manager publishes it: objects that are not
 * the same as before, IDs gone, nodes and networks when they are other lists.
 * With `readd`, a changed task is also listed as removed (so it goes last).
 */
function changeOf(a: SwarmSnapshot, b: SwarmSnapshot, readd: boolean): SwarmChange {
  const diff = <T extends { ID: string }>(x: T[], y: T[]) => {
    const was = new Map(x.map((o) => [o.ID, o]));
    const now = new Set(y.map((o) => o.ID));
    const changed = y.filter((o) => was.get(o.ID) !== o);
    return { changed, removed: [...was.keys()].filter((id) => !now.has(id)), readded: changed.filter((o) => was.has(o.ID)).map((o) => o.ID) };
  };
  const services = diff(a.services, b.services);
  const tasks = diff(a.tasks, b.tasks);
  return {
    services: services.changed, removedServices: services.removed,
    tasks: tasks.changed, removedTasks: readd ? [...tasks.removed, ...tasks.readded] : tasks.removed,
    ...(a.nodes !== b.nodes ? { nodes: b.nodes } : {}),
    ...(a.networks !== b.networks ? { networks: b.networks } : {}),
  };
}

/** The snapshot a follower rebuilds: objects by ID, removals first, a changed one in its place, a new one last. */
class Mirror {
  readonly services: Map<string, SwarmService>;
  readonly tasks: Map<string, SwarmTask>;
  nodes: SwarmNode[];
  networks: SwarmNetwork[];

  constructor(s: SwarmSnapshot) {
    this.services = new Map(s.services.map((o) => [o.ID, o]));
    this.tasks = new Map(s.tasks.map((o) => [o.ID, o]));
    this.nodes = s.nodes;
    this.networks = s.networks;
  }

  apply(c: SwarmChange): void {
    for (const id of c.removedServices) this.services.delete(id);
    for (const id of c.removedTasks) this.tasks.delete(id);
    for (const o of c.services) this.services.set(o.ID, o);
    for (const o of c.tasks) this.tasks.set(o.ID, o);
    this.nodes = c.nodes ?? this.nodes;
    this.networks = c.networks ?? this.networks;
  }

  get snapshot(): SwarmSnapshot {
    return { services: [...this.services.values()], tasks: [...this.tasks.values()], nodes: this.nodes, networks: this.networks };
  }
}

describe('incremental compile', () => {
  it('equals a full compile after every change, and its changes give the table a full apply gives', () => {
    fc.assert(fc.property(initial, fc.array(step, { minLength: 1, maxLength: 25 }), (init, steps) => {
      let snapshot = first(init);

      const compiler = new Compiler(options);
      const table = new Table({ drainTimeout: 1000 });
      const plain = new Table({ drainTimeout: 1000 });
      let previous: unknown;
      for (const st of [undefined, ...steps]) {
        if (st) snapshot = next(snapshot, st);
        const full = compile(snapshot, options);
        const { table: incremental, changes } = compiler.update(snapshot);
        assert.deepEqual(incremental, full);
        const fresh = new Table({ drainTimeout: 1000 });
        fresh.apply(full);
        plain.apply(full);
        // A change only where the table really changed.
        assert.equal(table.apply(incremental, changes), previous === undefined || !isDeepStrictEqual(previous, full));
        assert.deepEqual(served(table), served(fresh));
        assert.deepEqual(served(plain), served(fresh));
        previous = full;
        fresh.close();
      }
      table.close();
      plain.close();
    }), { numRuns: 300 });
  });

  it('handed each change alone, equals a full compile of the snapshot rebuilt from the changes', () => {
    // Each step: the change, with changed tasks removed and added again or not, or (`whole`) the whole snapshot, as after a reconnect,
    // its tasks in another order (`rotate`) as the manager may have them.
    const move = fc.record({ step, readd: fc.boolean(), whole: fc.nat(4).map((n) => n === 0), rotate: fc.nat(3) });
    fc.assert(fc.property(initial, fc.array(move, { minLength: 1, maxLength: 30 }), (init, moves) => {
      let snapshot = first(init);
      let mirror = new Mirror(snapshot);
      const compiler = new Compiler(options);
      const table = new Table({ drainTimeout: 1000 });
      let previous: unknown;
      for (const m of [undefined, ...moves]) {
        let update;
        if (!m) update = compiler.update(mirror.snapshot);
        else {
          const after = next(snapshot, m.step);
          const change = changeOf(snapshot, after, m.readd);
          snapshot = after;
          mirror.apply(change);
          if (m.whole) {
            const { tasks } = mirror.snapshot;
            mirror = new Mirror({ ...mirror.snapshot, tasks: [...tasks.slice(m.rotate), ...tasks.slice(0, m.rotate)] });
          }
          update = m.whole ? compiler.update(mirror.snapshot) : compiler.change(change);
        }
        const full = compile(mirror.snapshot, options);
        assert.deepEqual(update.table, full);
        const fresh = new Table({ drainTimeout: 1000 });
        fresh.apply(full);
        assert.equal(table.apply(update.table, update.changes), previous === undefined || !isDeepStrictEqual(previous, full));
        assert.deepEqual(served(table), served(fresh));
        previous = full;
        fresh.close();
      }
      table.close();
    }), { numRuns: 300 });
  });

  it('after a compile that throws part-way, refuses changes and compiles the next whole snapshot afresh', () => {
    const web = makeService({ labels: { 'meshd.publish': '80:80/http' }, created: undefined, versioned: true, ingress: false }, 'web');
    const task = (id: string, addr: string): SwarmTask => ({ ID: id, ServiceID: web.ID, DesiredState: 'running', Status: { State: 'running' }, NetworksAttachments: [{ Network: { ID: 'net-meshd', Spec: { Name: 'meshd' } }, Addresses: [addr] }] });
    const before: SwarmSnapshot = { services: [web], tasks: [task('t1', '10.0.1.1/24')], nodes: [], networks: [{ Id: 'net-meshd', Name: 'meshd' }] };
    const compiler = new Compiler(options);
    const table = new Table({ drainTimeout: 1000 });
    table.apply(compiler.update(before).table);
    // A new task for web lands, then a service that cannot be compiled stops the change part-way.
    const t2 = task('t2', '10.0.1.2/24');
    const broken = { ID: 'zz' } as unknown as SwarmService;
    assert.throws(() => compiler.change({ services: [web, broken], removedServices: [], tasks: [t2], removedTasks: [] }));
    assert.throws(() => compiler.change({ services: [], removedServices: [], tasks: [], removedTasks: [] }), /whole snapshot/);
    const after: SwarmSnapshot = { ...before, tasks: [...before.tasks, t2] };
    const update = compiler.update(after);
    assert.deepEqual(update.table, compile(after, options));
    assert.equal(update.changes, undefined, 'what the live table holds is for its owner to compare');
    assert.equal(table.apply(update.table), true);
    assert.equal([...table.routes.values()][0]!.backends.size, 2);
    // And changes are taken again.
    const t3 = task('t3', '10.0.1.3/24');
    const next = compiler.change({ services: [], removedServices: [], tasks: [t3], removedTasks: [] });
    assert.deepEqual(next.table, compile({ ...after, tasks: [...after.tasks, t3] }, options));
    assert.equal(next.changes?.size, 1);
    table.close();
  });
});
