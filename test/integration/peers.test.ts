// Manager → worker snapshot streaming on loopback: token check, live updates,
// fail-over between manager instances, the last table kept while none answers,
// and a worker started before any manager following one as soon as it listens.
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import dns from 'node:dns';
import { after, describe, it } from 'node:test';
import { request } from 'undici';
import { silentLogger } from '../../src/core/log.js';
import { PeerFollower, PeerServer, SNAPSHOTS_PATH, TASK_FAILED_PATH } from '../../src/discovery/peer.js';
import type { SwarmSnapshot } from '../../src/discovery/snapshot.js';
import { freePort, waitFor } from '../support/net.js';

const TOKEN = 's3cret-token';
function snapshot(replicas: number): SwarmSnapshot {
  return {
    services: [{ ID: 'svc', Spec: { Name: 'web', Labels: { 'meshd.publish': '80:80' } } }],
    tasks: [
      ...Array.from({ length: replicas }, (_, i) => ({ ID: `t${i}`, ServiceID: 'svc', DesiredState: 'running' as const, Status: { State: 'running' as const } })),
      { ID: 'old', ServiceID: 'svc', DesiredState: 'shutdown' as const, Status: { State: 'complete' as const } },
    ],
    nodes: [], networks: [],
  };
}

/**
 * A DNS server on loopback that, like swarm's for `tasks.<service>` before the
 * task is registered, answers nothing until `registered` is set; then every A
 * query gets 127.0.0.1 (and AAAA an empty answer).
 */
async function fakeSwarmDns(): Promise<{ port: number; registered: boolean; close(): void }> {
  const socket = dgram.createSocket('udp4');
  const state = {
    port: 0,
    registered: false,
    close: () => socket.close(),
  };
  socket.on('message', (query, from) => {
    if (!state.registered || query.length < 17) return;
    let end = 12;
    while (end < query.length && query[end] !== 0) end += query[end]! + 1;
    const question = query.subarray(12, end + 5);
    const isA = question.readUInt16BE(question.length - 4) === 1;
    const head = Buffer.alloc(12);
    query.copy(head, 0, 0, 2);
    head.writeUInt16BE(0x8180, 2); // a response, recursion desired and available, no error
    head.writeUInt16BE(1, 4);
    head.writeUInt16BE(isA ? 1 : 0, 6);
    // Name (a pointer to the question's), type A, class IN, TTL 0, 4 bytes: 127.0.0.1.
    const answer = isA ? Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 127, 0, 0, 1]) : Buffer.alloc(0);
    socket.send(Buffer.concat([head, question, answer]), from.port, from.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  state.port = socket.address().port;
  return state;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('peers', () => {
  const servers: PeerServer[] = [];
  const followers: PeerFollower[] = [];
  after(async () => {
    for (const f of followers) f.stop();
    for (const s of servers) await s.close();
  });

  it('refuses a request without the right token with 401 and nothing else', async () => {
    const server = new PeerServer(TOKEN, silentLogger(), () => assert.fail('no task report without the token'));
    servers.push(server);
    const port = await server.listen('127.0.0.1', 0);
    server.publish(snapshot(1));
    for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: TOKEN }] as Record<string, string>[]) {
      const res = await request(`http://127.0.0.1:${port}${SNAPSHOTS_PATH}`, { headers });
      assert.equal(res.statusCode, 401);
      assert.equal(await res.body.text(), 'unauthorized\n');
    }
  });

  it('streams snapshots to a follower, fails over to another manager, and keeps the last one while none answers', async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    const firstReports: string[] = [];
    const first = new PeerServer(TOKEN, silentLogger(), (task) => firstReports.push(task));
    servers.push(first);
    await first.listen('127.0.0.1', p1);
    first.publish(snapshot(2));

    const seen: SwarmSnapshot[] = [];
    const errors: string[] = [];
    const follower = new PeerFollower({
      peers: [`127.0.0.1:${p1}`, `127.0.0.1:${p2}`], port: 0, token: TOKEN, log: silentLogger(), retryDelay: 100,
      onSnapshot: (s) => seen.push(s), onError: (e) => errors.push((e as Error).message),
    });
    followers.push(follower);
    follower.start();
    await waitFor(() => seen.length === 1, 5000, 'first snapshot');
    assert.deepEqual(seen[0]!.tasks.map((t) => t.ID), ['t0', 't1'], 'only running tasks travel');

    first.publish(snapshot(2));
    first.publish(snapshot(3));
    await waitFor(() => seen.length === 2, 5000, 'second snapshot');
    assert.equal(seen[1]!.tasks.length, 3, 'an unchanged snapshot is not sent again');

    const reported: string[] = [];
    const reporting = new PeerServer(TOKEN, silentLogger(), (task) => reported.push(task));
    servers.push(reporting);
    const rp = await reporting.listen('127.0.0.1', 0);
    const post = (body: string, token = TOKEN) => request(`http://127.0.0.1:${rp}${TASK_FAILED_PATH}`, { method: 'POST', body, headers: { authorization: `Bearer ${token}` } }).then(async (r) => { await r.body.dump(); return r.statusCode; });
    assert.equal(await post('{"task":"t1"}', 'wrong'), 401);
    assert.equal(await post('not json'), 400);
    assert.equal(await post('{"task":"t1"}'), 204);
    assert.deepEqual(reported, ['t1']);
    await follower.reportTaskFailed('t0');
    assert.deepEqual(firstReports, ['t0'], 'a follower reports to the manager it follows');

    await first.close();
    await waitFor(() => errors.length >= 2, 5000, 'errors while no manager answers');
    assert.equal(seen.length, 2, 'nothing replaces the last snapshot');

    const second = new PeerServer(TOKEN, silentLogger());
    servers.push(second);
    await second.listen('127.0.0.1', p2);
    second.publish(snapshot(1));
    await waitFor(() => seen.length === 3, 5000, 'snapshot from the second manager');
    assert.equal(follower.current, `127.0.0.1:${p2}`);
    assert.equal(seen[2]!.tasks.length, 1);
  });

  it('follows a manager within moments of it listening when started before it, then retries at the normal delay once it had a table', async () => {
    const swarmDns = await fakeSwarmDns();
    const servers0 = dns.getServers();
    dns.setServers([`127.0.0.1:${swarmDns.port}`]);
    try {
      const port = await freePort();
      const seen: SwarmSnapshot[] = [];
      const errors: string[] = [];
      // A normal delay well above the bound below: only the retries while starting can meet it.
      const follower = new PeerFollower({
        peers: 'tasks.meshd.test', port, token: TOKEN, log: silentLogger(), retryDelay: 4000,
        onSnapshot: (s) => seen.push(s), onError: (e) => errors.push((e as Error).message),
      });
      followers.push(follower);
      follower.start();

      // As in a fresh deployment: the name is unknown for a moment, then the manager's port refuses.
      await sleep(1000);
      swarmDns.registered = true;
      await sleep(1000);
      assert.ok(errors.some((e) => e.includes('ECONNREFUSED')), `the follower reached the refusing port: ${errors.slice(-3).join('; ')}`);

      const manager = new PeerServer(TOKEN, silentLogger());
      servers.push(manager);
      await manager.listen('127.0.0.1', port);
      const listening = Date.now();
      manager.publish(snapshot(2));
      await waitFor(() => seen.length === 1, 10_000, 'first snapshot');
      const lag = Date.now() - listening;
      assert.ok(lag < 2000, `first snapshot ${lag} ms after the manager listened`);

      // Once it has had a table, a lost manager is retried at the normal delay.
      const before = errors.length;
      await manager.close();
      await sleep(1500);
      assert.ok(errors.length - before <= 2, `${errors.length - before} failed attempts in 1.5 s: ${errors.slice(before).join('; ')}`);
      assert.equal(seen.length, 1, 'the last snapshot stays');
    } finally {
      dns.setServers(servers0);
      swarmDns.close();
    }
  });
});
