// What swarm discovery asks the engine: only routable services (all with
// --compat) and meshd's own, only their tasks with desired state running, a
// draining task by its ID; no snapshot when nothing changed; and with each
// snapshot, what changed since the one before. The engine
// here is a fake that applies the filters the way dockerd does.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { silentLogger } from '../../src/core/log.js';
import type { SwarmChange, SwarmSnapshot } from '../../src/discovery/snapshot.js';
import { SwarmDiscovery, TASK_FILTER_MAX, type DockerReader } from '../../src/discovery/swarm.js';
import { waitFor } from '../support/net.js';

type Filters = Record<string, string[]>;
interface Obj { ID: string; Version: { Index: number }; [k: string]: unknown }

class FakeEngine {
  readonly calls: string[] = [];
  services: Obj[] = [];
  tasks: Obj[] = [];
  #index = 1;
  /** Answers 404 to the next task list filtered on a service it does not have. */
  strict = true;

  service(id: string, labels: Record<string, string>, name = id): Obj {
    const s = { ID: id, Version: { Index: this.#index++ }, Spec: { Name: name, Labels: labels }, PreviousSpec: { Name: name, Labels: {} } };
    this.services.push(s);
    return s;
  }

  task(id: string, service: string, state = 'running', desired = 'running'): Obj {
    const t = { ID: id, Version: { Index: this.#index++ }, ServiceID: service, DesiredState: desired, Status: { State: state, Message: 'started' },
      Spec: { Placement: { Platforms: [{ OS: 'linux' }] } } };
    this.tasks = this.tasks.filter((o) => o.ID !== id);
    this.tasks.push(t);
    return t;
  }

  reader(): DockerReader {
    const record = (what: string, o?: { filters?: Filters }) => this.calls.push(o?.filters ? `${what} ${JSON.stringify(o.filters)}` : what);
    return {
      listServices: async (o?: { filters?: Filters }) => {
        record('services', o);
        const f = o?.filters ?? {};
        return this.services.filter((s) => (f.label ?? []).every((l) => l in (s.Spec as { Labels: object }).Labels)
          && (!f.name || f.name.some((n) => (s.Spec as { Name: string }).Name.startsWith(n))));
      },
      listTasks: async (o?: { filters?: Filters }) => {
        record('tasks', o);
        const f = o?.filters ?? {};
        if (this.strict && f.service?.some((id) => !this.services.some((s) => s.ID === id))) throw Object.assign(new Error('no such service'), { statusCode: 404 });
        return this.tasks.filter((t) => (!f['desired-state'] || f['desired-state'].includes(t.DesiredState as string))
          && (!f.service || f.service.includes(t.ServiceID as string)) && (!f.id || f.id.some((p) => t.ID.startsWith(p))));
      },
      listNodes: async () => { record('nodes'); return [{ ID: 'n1', Version: { Index: 1 }, Description: { Hostname: 'h1', Engine: { Plugins: [] } } }]; },
      listNetworks: async () => { record('networks'); return [{ Id: 'net1', Name: 'meshd', IPAM: { Config: [] } }]; },
      getEvents: async () => new PassThrough(),
      info: async () => ({}),
      getContainer: () => ({ inspect: async () => ({}) }),
    } as unknown as DockerReader;
  }
}

function discover(engine: FakeEngine, extra: { compat?: boolean; ownService?: string; fail?: (n: number) => boolean } = {}) {
  const snapshots: SwarmSnapshot[] = [];
  const changes: (SwarmChange | undefined)[] = [];
  const errors: unknown[] = [];
  const discovery = new SwarmDiscovery({
    docker: engine.reader(), log: silentLogger(), taskPollInterval: 20, resyncInterval: 60_000, ...extra,
    onSnapshot: (s, c) => {
      snapshots.push(s);
      changes.push(c);
      if (extra.fail?.(snapshots.length)) throw new Error('consumer failed');
    },
    onError: (err) => errors.push(err),
  });
  discovery.start();
  return { discovery, snapshots, changes, errors };
}

/** `s` with `c` applied as a follower's mirror applies a delta: removals, then each object in its place or last. */
function applied(s: SwarmSnapshot, c: SwarmChange): SwarmSnapshot {
  const services = new Map(s.services.map((o) => [o.ID, o]));
  const tasks = new Map(s.tasks.map((o) => [o.ID, o]));
  for (const id of c.removedServices) services.delete(id);
  for (const id of c.removedTasks) tasks.delete(id);
  for (const o of c.services) services.set(o.ID, o);
  for (const o of c.tasks) tasks.set(o.ID, o);
  return { services: [...services.values()], tasks: [...tasks.values()], nodes: c.nodes ?? s.nodes, networks: c.networks ?? s.networks };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const taskIds = (s: SwarmSnapshot | undefined) => s?.tasks.map((t) => t.ID).sort();

describe('swarm discovery reads', () => {
  it('lists every service, then only the running tasks of those labelled meshd.publish and of its own, and hands on nothing while nothing changes', async () => {
    const engine = new FakeEngine();
    engine.service('web', { 'meshd.publish': '80:80' });
    engine.service('plain', {});
    engine.service('meshd-svc', {}, 'meshd');
    engine.service('meshd-other', {}, 'meshd-other');
    engine.task('w1', 'web');
    engine.task('w0', 'web', 'shutdown', 'shutdown');
    engine.task('p1', 'plain');
    engine.task('m1', 'meshd-svc');
    const { discovery, snapshots, errors } = discover(engine, { ownService: 'meshd' });
    try {
      await waitFor(() => engine.calls.filter((c) => c.startsWith('tasks')).length >= 4, 2000, 'a few task polls');
      assert.deepEqual(errors, []);
      assert.deepEqual(engine.calls.slice(0, 4).sort(), [
        'networks', 'nodes', 'services',
        'tasks {"desired-state":["running"],"service":["web","meshd-svc"]}',
      ]);
      assert.equal(snapshots.length, 1, 'one snapshot: the polls after it found nothing new');
      const [s] = snapshots;
      // Services that do not route are there for their notices; their tasks are not read.
      assert.deepEqual(s!.services.map((x) => x.ID), ['web', 'plain', 'meshd-svc', 'meshd-other']);
      assert.deepEqual(taskIds(s), ['m1', 'w1']);
      assert.deepEqual(s!.services[0], { ID: 'web', Spec: { Name: 'web', Labels: { 'meshd.publish': '80:80' } } }, 'only the fields meshd reads');
      assert.deepEqual(s!.tasks.find((t) => t.ID === 'w1'), { ID: 'w1', ServiceID: 'web', DesiredState: 'running', Status: { State: 'running' } });
      assert.deepEqual(s!.nodes, [{ ID: 'n1', Description: { Hostname: 'h1' } }]);
      assert.deepEqual(s!.networks, [{ Id: 'net1', Name: 'meshd' }]);

      // A rolling update: w1 drains (desired shutdown, still running) while w2 starts.
      engine.task('w2', 'web');
      engine.task('w1', 'web', 'running', 'shutdown');
      await waitFor(() => snapshots.length >= 2, 2000, 'the update seen');
      assert.ok(engine.calls.includes('tasks {"id":["w1"]}'), 'the task that left the running list is asked for by ID');
      assert.deepEqual(taskIds(snapshots.at(-1)), ['m1', 'w1', 'w2']);
      assert.equal(snapshots.at(-1)!.tasks.find((t) => t.ID === 'w1')!.DesiredState, 'shutdown');
      const kept = snapshots.at(-1)!.tasks.find((t) => t.ID === 'm1');
      assert.equal(kept, snapshots[0]!.tasks.find((t) => t.ID === 'm1'), 'an unchanged task keeps its object');

      engine.task('w1', 'web', 'shutdown', 'shutdown');
      await waitFor(() => snapshots.length >= 3, 2000, 'the drained task gone');
      assert.deepEqual(taskIds(snapshots.at(-1)), ['m1', 'w2']);
      const lookups = engine.calls.filter((c) => c.includes('"id"')).length;
      await sleep(100);
      assert.equal(engine.calls.filter((c) => c.includes('"id"')).length, lookups, 'a stopped task is not asked for again');
      assert.ok(!engine.calls.some((c) => c.startsWith('tasks') && !c.includes('"id"') && !c.includes('"desired-state":["running"]')), 'never the whole task history');
    } finally {
      discovery.stop();
    }
  });

  it('lists every service with --compat, and past TASK_FILTER_MAX services lists running tasks unfiltered by service', async () => {
    const engine = new FakeEngine();
    for (let i = 0; i <= TASK_FILTER_MAX; i++) {
      engine.service(`s${i}`, i % 2 ? { 'traefik.http.routers.r.rule': 'Host(`a`)' } : {});
      engine.task(`t${i}`, `s${i}`);
    }
    const { discovery, snapshots } = discover(engine, { compat: true });
    try {
      await waitFor(() => snapshots.length, 2000, 'a snapshot');
      assert.equal(engine.calls.find((c) => c.startsWith('services')), 'services');
      assert.equal(engine.calls.find((c) => c.startsWith('tasks')), 'tasks {"desired-state":["running"]}');
      assert.equal(snapshots[0]!.services.length, TASK_FILTER_MAX + 1);
      assert.equal(snapshots[0]!.tasks.length, TASK_FILTER_MAX + 1);
    } finally {
      discovery.stop();
    }
  });

  it('lists services again when one it filters tasks on is gone', async () => {
    const engine = new FakeEngine();
    engine.service('a', { 'meshd.publish': '80:80' });
    engine.service('b', { 'meshd.publish': '81:80' });
    engine.task('a1', 'a');
    engine.task('b1', 'b');
    const { discovery, snapshots, errors } = discover(engine);
    try {
      await waitFor(() => snapshots.length, 2000, 'a snapshot');
      engine.services = engine.services.filter((s) => s.ID !== 'b');
      engine.tasks = engine.tasks.filter((t) => t.ServiceID !== 'b');
      await waitFor(() => snapshots.length >= 2, 2000, 'b gone');
      assert.deepEqual(snapshots.at(-1)!.services.map((s) => s.ID), ['a']);
      assert.deepEqual(taskIds(snapshots.at(-1)), ['a1']);
      assert.deepEqual(errors, [], 'not reported as an engine failure');
    } finally {
      discovery.stop();
    }
  });

  it('hands on with each snapshot what changed: only that, and applied to the snapshot before it gives the new one, in order', async () => {
    const engine = new FakeEngine();
    engine.service('a', { 'meshd.publish': '80:80' });
    engine.service('b', { 'meshd.publish': '81:80' });
    for (const id of ['a1', 'a2', 'b1', 'b2']) engine.task(id, id.startsWith('a') ? 'a' : 'b');
    const { discovery, snapshots, changes, errors } = discover(engine);
    const step = async (what: string, change: () => void, full = false) => {
      const n = snapshots.length;
      change();
      if (full) discovery.refreshSoon(true);
      await waitFor(() => snapshots.length > n, 2000, what);
    };
    try {
      await waitFor(() => snapshots.length, 2000, 'a snapshot');
      assert.equal(changes[0], undefined, 'the first snapshot is whole');
      await step('a task changes', () => engine.task('a1', 'a', 'running', 'shutdown'));
      assert.deepEqual(changes[1], { services: [], removedServices: [], tasks: [snapshots[1]!.tasks[0]], removedTasks: [] });
      await step('a task starts', () => engine.task('a3', 'a'));
      await step('a task stops', () => engine.task('b1', 'b', 'shutdown', 'shutdown'));
      assert.deepEqual(changes[3], { services: [], removedServices: [], tasks: [], removedTasks: ['b1'] });
      await step('a service is relabelled', () => {
        engine.services = engine.services.filter((x) => x.ID !== 'b');
        engine.service('b', { 'meshd.publish': '82:80' });
      }, true);
      assert.deepEqual(changes[4]!.services.map((x) => x.ID), ['b']);
      await step('a service goes', () => {
        engine.services = engine.services.filter((x) => x.ID !== 'a');
        engine.tasks = engine.tasks.filter((t) => t.ServiceID !== 'a');
      }, true);
      assert.deepEqual(changes[5], { services: [], removedServices: ['a'], tasks: [], removedTasks: ['a1', 'a2', 'a3'] });
      assert.deepEqual(errors, []);
      for (let i = 1; i < snapshots.length; i++) assert.deepEqual(applied(snapshots[i - 1]!, changes[i]!), snapshots[i], `snapshot ${i}`);
      assert.deepEqual(snapshots[1]!.tasks.map((t) => t.ID), ['a1', 'a2', 'b1', 'b2'], 'a changed task keeps its place');
    } finally {
      discovery.stop();
    }
  });

  it('hands on the whole snapshot again, without a change, after its consumer failed on one', async () => {
    const engine = new FakeEngine();
    engine.service('a', { 'meshd.publish': '80:80' });
    engine.task('a1', 'a');
    const { discovery, snapshots, changes, errors } = discover(engine, { fail: (n) => n === 2 });
    try {
      await waitFor(() => snapshots.length, 2000, 'a snapshot');
      engine.task('a2', 'a');
      await waitFor(() => snapshots.length >= 2, 2000, 'the change the consumer fails on');
      engine.task('a3', 'a');
      await waitFor(() => snapshots.length >= 3, 2000, 'the next');
      engine.task('a4', 'a');
      await waitFor(() => snapshots.length >= 4, 2000, 'and the one after');
      assert.deepEqual(changes.map((c) => c && c.tasks.map((t) => t.ID)), [undefined, ['a2'], undefined, ['a4']]);
      assert.deepEqual((errors as Error[]).map((e) => e.message), ['consumer failed']);
    } finally {
      discovery.stop();
    }
  });
});
