// Deltas on the peer stream, on loopback: a full snapshot then only what
// changed; a follower out of step reconnecting for a full snapshot; followers
// and managers that predate deltas; a follower rebuilding exactly the
// manager's snapshots through a random sequence of changes; and one handing
// each delta on as a change, which compiled gives the manager's table.
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { request } from 'undici';
import { silentLogger } from '../../src/core/log.js';
import { DELTAS_FEATURE, FEATURES_HEADER, PeerFollower, PeerServer, SNAPSHOTS_PATH } from '../../src/discovery/peer.js';
import type { SwarmChange, SwarmSnapshot, SwarmTask } from '../../src/discovery/snapshot.js';
import { compile } from '../../src/table/compile.js';
import { Compiler, type CompilerUpdate } from '../../src/table/incremental.js';
import { waitFor } from '../support/net.js';

const TOKEN = 'delta-token';

function task(id: string, service: string, state: 'running' | 'complete' = 'running', desired: 'running' | 'shutdown' = 'running'): SwarmTask {
  return { ID: id, ServiceID: service, DesiredState: desired, Status: { State: state }, NetworksAttachments: [{ Network: { ID: 'n1' }, Addresses: [`10.0.0.${id.length}/24`] }] };
}

function swarm(services: string[], tasks: SwarmTask[]): SwarmSnapshot {
  return {
    services: services.map((s) => ({ ID: s, Spec: { Name: s, Labels: { 'meshd.publish': '80:80' } } })),
    tasks, nodes: [{ ID: 'node1', Description: { Hostname: 'h1' } }], networks: [{ Id: 'n1', Name: 'meshd' }],
  };
}

/** Random snapshots of a few services and tasks, running or not. */
const ids = fc.constantFrom('a', 'b', 'c', 'd');
const taskArb = fc.record({
  id: fc.constantFrom('t1', 't2', 't3', 't4', 't5', 't6'), service: ids,
  state: fc.constantFrom('running' as const, 'complete' as const), desired: fc.constantFrom('running' as const, 'shutdown' as const),
}).map((t) => task(t.id, t.service, t.state, t.desired));
const snapshotArb = fc.record({
  services: fc.uniqueArray(ids, { maxLength: 4 }),
  tasks: fc.uniqueArray(taskArb, { maxLength: 6, selector: (t) => t.ID }),
  hostname: fc.constantFrom('h1', 'h2'),
}).map(({ services, tasks, hostname }) => ({ ...swarm(services, tasks), nodes: [{ ID: 'node1', Description: { Hostname: hostname } }] }));

/** Lines of a snapshot stream as they arrive. */
async function lines(port: number, headers: Record<string, string>): Promise<{ lines: Record<string, unknown>[]; raw: string[]; close(): void }> {
  const abort = new AbortController();
  const res = await request(`http://127.0.0.1:${port}${SNAPSHOTS_PATH}`, { headers: { authorization: `Bearer ${TOKEN}`, ...headers }, signal: abort.signal });
  const out = { lines: [] as Record<string, unknown>[], raw: [] as string[], close: () => abort.abort() };
  let buffered = '';
  res.body.on('data', (c: Buffer) => {
    buffered += c.toString();
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (line.trim()) {
        out.raw.push(line);
        out.lines.push(JSON.parse(line) as Record<string, unknown>);
      }
    }
  });
  res.body.on('error', () => undefined);
  return out;
}

/** Snapshots compared regardless of order, as compile reads them. */
function canonical(s: SwarmSnapshot): SwarmSnapshot {
  const byId = <T extends { ID: string }>(l: T[]) => [...l].sort((a, b) => a.ID.localeCompare(b.ID));
  return JSON.parse(JSON.stringify({ ...s, services: byId(s.services), tasks: byId(s.tasks.filter((t) => t.Status.State === 'running')) })) as SwarmSnapshot;
}

/** A stand-in manager whose answers are scripted stream by stream. */
async function scripted(streams: string[][]): Promise<{ port: number; requests: (string | undefined)[]; close(): Promise<void> }> {
  const requests: (string | undefined)[] = [];
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    requests.push(req.headers[FEATURES_HEADER] as string | undefined);
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    for (const line of streams[requests.length - 1] ?? []) res.write(line + '\n');
  });
  server.on('connection', (s: net.Socket) => { sockets.add(s); s.once('close', () => sockets.delete(s)); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    requests,
    close: async () => {
      const closed = new Promise((r) => server.close(r));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

describe('peer stream deltas', () => {
  const cleanup: (() => unknown)[] = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c();
  });

  async function manager(): Promise<{ server: PeerServer; port: number }> {
    const server = new PeerServer(TOKEN, silentLogger());
    const port = await server.listen('127.0.0.1', 0);
    cleanup.push(() => server.close());
    return { server, port };
  }

  function follower(port: number, seen: SwarmSnapshot[], onChange?: (c: SwarmChange) => void): PeerFollower {
    const f = new PeerFollower({ peers: [`127.0.0.1:${port}`], port, token: TOKEN, log: silentLogger(), onSnapshot: (s) => seen.push(s), onChange, onError: () => undefined, retryDelay: 50 });
    cleanup.push(() => f.stop());
    f.start();
    return f;
  }

  it('sends a full snapshot, then only what changed, each line with its version; an old follower gets whole snapshots', async () => {
    const { server, port } = await manager();
    const history = task('old', 'web', 'complete');
    server.publish(swarm(['web', 'api'], [task('w1', 'web'), task('a1', 'api'), history]));
    const fresh = await lines(port, { [FEATURES_HEADER]: `acme,${DELTAS_FEATURE}` });
    const old = await lines(port, {});
    cleanup.push(fresh.close, old.close);
    await waitFor(() => fresh.lines.length >= 2 && old.lines.length >= 1, 2000, 'first lines');
    assert.equal(fresh.lines[0]!.type, 'hello');
    assert.equal(fresh.lines[1]!.type, 'full');
    assert.equal(fresh.lines[1]!.version, 1);
    assert.deepEqual(canonical(fresh.lines[1]!.snapshot as SwarmSnapshot), canonical(swarm(['web', 'api'], [task('w1', 'web'), task('a1', 'api')])));
    assert.equal(old.lines[0]!.type, undefined, 'an untyped snapshot line');

    // w1 is replaced by w2; nothing else changes.
    const next = swarm(['web', 'api'], [task('w2', 'web'), task('a1', 'api'), history]);
    server.publish(next);
    server.publish(next);
    await waitFor(() => fresh.lines.length >= 3 && old.lines.length >= 2, 2000, 'the change');
    assert.deepEqual(fresh.lines[2], { type: 'delta', version: 2, base: 1, tasks: [task('w2', 'web')], removedTasks: ['w1'] });
    assert.deepEqual(canonical(old.lines[1] as unknown as SwarmSnapshot), canonical(next));

    // A service goes with its task, and the networks change.
    const last = { ...swarm(['web'], [task('w2', 'web')]), networks: [{ Id: 'n1', Name: 'meshd' }, { Id: 'n2', Name: 'other' }] };
    server.publish(last);
    await waitFor(() => fresh.lines.length >= 4, 2000, 'the removal');
    assert.deepEqual(fresh.lines[3], { type: 'delta', version: 3, base: 2, removedServices: ['api'], removedTasks: ['a1'], networks: last.networks });
    assert.equal(fresh.lines.length, 4, 'the repeated publish sent nothing');
  });

  it('a follower rebuilds the manager\'s snapshot from deltas, and one out of step reconnects for a full snapshot', async () => {
    const base = swarm(['web'], [task('w1', 'web')]);
    const full = (version: number, s: SwarmSnapshot) => JSON.stringify({ type: 'full', version, snapshot: s });
    const manager = await scripted([
      [full(1, base), JSON.stringify({ type: 'delta', version: 2, base: 1, tasks: [task('w2', 'web')] }), JSON.stringify({ type: 'delta', version: 9, base: 8, removedTasks: ['w1'] })],
      [full(9, swarm(['web'], [task('w3', 'web')]))],
    ]);
    cleanup.push(manager.close);
    const seen: SwarmSnapshot[] = [];
    follower(manager.port, seen);
    await waitFor(() => seen.length >= 3, 3000, 'three snapshots');
    assert.deepEqual(seen.map((s) => s.tasks.map((t) => t.ID).sort()), [['w1'], ['w1', 'w2'], ['w3']], 'the delta after the gap is not applied');
    assert.deepEqual(manager.requests, [DELTAS_FEATURE, DELTAS_FEATURE], 'reconnected at once, announcing deltas');
    assert.equal(seen[1]!.services[0], seen[0]!.services[0], 'an unchanged service keeps its object');
  });

  it('a follower reads a snapshot line of many chunks whole, with no character cut where a chunk ends', async () => {
    const { server, port } = await manager();
    const seen: SwarmSnapshot[] = [];
    follower(port, seen);
    // About 3 MB of three-byte characters: dozens of socket reads, some ending inside one.
    const big = swarm(['web'], [task('w1', 'web')]);
    big.services[0]!.Spec.Labels = { note: '€'.repeat(1_000_000) };
    server.publish(big);
    await waitFor(() => seen.length >= 1, 10_000, 'the large snapshot');
    assert.equal(seen[0]!.services[0]!.Spec.Labels!.note, '€'.repeat(1_000_000));
  });

  it('a follower reads an older manager\'s whole snapshot lines', async () => {
    const manager = await scripted([[JSON.stringify(swarm(['web'], [task('w1', 'web')])), JSON.stringify(swarm(['web'], [task('w2', 'web')]))]]);
    cleanup.push(manager.close);
    const seen: SwarmSnapshot[] = [];
    follower(manager.port, seen);
    await waitFor(() => seen.length >= 2, 3000, 'two snapshots');
    assert.deepEqual(seen.map((s) => s.tasks.map((t) => t.ID)), [['w1'], ['w2']]);
  });

  /** What changed from `a` to `b`, as discovery tells it: objects not the very ones before (running or not), IDs gone, nodes and networks. */
  function changeOf(a: SwarmSnapshot | undefined, b: SwarmSnapshot): SwarmChange | undefined {
    if (!a) return undefined;
    const diff = <T extends { ID: string }>(x: T[], y: T[]) => ({
      changed: y.filter((o) => !x.includes(o)),
      removed: x.filter((o) => !y.some((p) => p.ID === o.ID)).map((o) => o.ID),
    });
    const services = diff(a.services, b.services);
    const tasks = diff(a.tasks, b.tasks);
    return { services: services.changed, removedServices: services.removed, tasks: tasks.changed, removedTasks: tasks.removed, nodes: b.nodes, networks: b.networks };
  }

  for (const given of [false, true]) {
    it(`a follower rebuilds exactly each snapshot the manager publishes, through random changes${given ? ', published from what changed' : ''}`, async () => {
      const { server, port } = await manager();
      const seen: SwarmSnapshot[] = [];
      follower(port, seen);
      let last: SwarmSnapshot | undefined;
      let published: SwarmSnapshot | undefined;
      await fc.assert(fc.asyncProperty(fc.array(snapshotArb, { minLength: 1, maxLength: 8 }), async (sequence) => {
        const from = seen.length;
        const expected: SwarmSnapshot[] = [];
        for (const s of sequence) {
          server.publish(s, given ? changeOf(published, s) : undefined);
          published = s;
          // A publish that changes nothing compile reads sends nothing.
          if (!last || JSON.stringify(canonical(last)) !== JSON.stringify(canonical(s))) expected.push(last = s);
          await waitFor(() => seen.length >= from + expected.length, 2000, 'the follower\'s snapshot');
        }
        assert.deepEqual(seen.slice(from).map(canonical), expected.map(canonical));
      }), { numRuns: 40 });
    });
  }

  it('a follower hands on each delta as a change; compiled as changes, they give the table of the manager\'s snapshot', async () => {
    const { server, port } = await manager();
    const options = { defaults: { health: { interval: 2000, timeout: 1000, rise: 2, fall: 3 } }, selfNetworks: [], ipvs: false };
    const compiler = new Compiler(options);
    const tables: CompilerUpdate[] = [];
    let whole = 0;
    const f = new PeerFollower({
      peers: [`127.0.0.1:${port}`], port, token: TOKEN, log: silentLogger(), onError: () => undefined, retryDelay: 50,
      onSnapshot: (s) => { whole++; tables.push(compiler.update(s)); },
      onChange: (c) => tables.push(compiler.change(c)),
    });
    cleanup.push(() => f.stop());
    f.start();
    let last: SwarmSnapshot | undefined;
    await fc.assert(fc.asyncProperty(fc.array(snapshotArb, { minLength: 1, maxLength: 8 }), async (sequence) => {
      for (const s of sequence) {
        const from = tables.length;
        server.publish(s);
        if (last && JSON.stringify(canonical(last)) === JSON.stringify(canonical(s))) continue;
        last = s;
        await waitFor(() => tables.length > from, 2000, 'the follower\'s table');
        assert.deepEqual(tables.at(-1)!.table, compile(s, options));
      }
    }), { numRuns: 40 });
    assert.equal(whole, 1, 'one full snapshot, then only changes');
  });

  it('a follower reconnects for a full snapshot when a delta names an object without a string ID', async () => {
    const base = swarm(['web'], [task('w1', 'web')]);
    const manager = await scripted([
      [JSON.stringify({ type: 'full', version: 1, snapshot: base }), JSON.stringify({ type: 'delta', version: 2, base: 1, tasks: [{ ...task('w2', 'web'), ID: 7 }] })],
      [JSON.stringify({ type: 'full', version: 2, snapshot: swarm(['web'], [task('w3', 'web')]) })],
    ]);
    cleanup.push(manager.close);
    const seen: SwarmSnapshot[] = [];
    const changes: SwarmChange[] = [];
    follower(manager.port, seen, (c) => changes.push(c));
    await waitFor(() => seen.length >= 2, 3000, 'two full snapshots');
    assert.deepEqual(seen.map((s) => s.tasks.map((t) => t.ID)), [['w1'], ['w3']]);
    assert.deepEqual(changes, [], 'the malformed delta was not handed on');
  });
});
