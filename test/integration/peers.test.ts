// Manager → worker snapshot streaming on loopback: token check, live updates,
// fail-over between manager instances, and the last table kept while none answers.
import assert from 'node:assert/strict';
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
});
