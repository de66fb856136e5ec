// Which meshd orders certificates, on nodes lists recorded from a real engine
// (test/fixtures/swarm: one manager, the leader).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isLeader, leaderPeer } from '../../src/discovery/leader.js';
import type { SwarmSnapshot } from '../../src/discovery/snapshot.js';

const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test/fixtures/swarm');
const load = (name: string): SwarmSnapshot => JSON.parse(fs.readFileSync(path.join(FIXTURES, name), 'utf8'));

describe('the ordering instance', () => {
  it('is the one whose engine is the leader manager, in every recorded snapshot', () => {
    for (const file of fs.readdirSync(FIXTURES).filter((f) => f.endsWith('.json'))) {
      const s = load(file);
      const [node] = s.nodes;
      assert.equal(node!.ManagerStatus?.Leader, true, `${file}: the recorded node leads`);
      assert.equal(isLeader(s.nodes, node!.ID), true, file);
      assert.equal(isLeader(s.nodes, 'x'.repeat(25)), false, `${file}: another engine`);
      assert.equal(isLeader(s.nodes, undefined), false, `${file}: an engine whose node ID is not known`);
    }
  });

  it('moves with leadership; a worker or a manager that does not lead never orders', () => {
    const s = load('replicated.json');
    const recorded = s.nodes[0]!;
    // The recorded manager after an election it lost, beside the new leader and a worker.
    const nodes = [
      { ...recorded, ManagerStatus: { ...recorded.ManagerStatus, Leader: false } },
      { ...recorded, ID: 'newleader', ManagerStatus: { ...recorded.ManagerStatus, Leader: true } },
      { ID: 'worker1', Spec: { Role: 'worker' } },
    ];
    assert.equal(isLeader(nodes, recorded.ID), false);
    assert.equal(isLeader(nodes, 'newleader'), true);
    assert.equal(isLeader(nodes, 'worker1'), false);
    assert.equal(isLeader([{ ...recorded, ManagerStatus: undefined }], recorded.ID), false, 'no leader while an election runs');
  });

  it('is followed, by a manager that does not lead, at its own service\'s task on the leader\'s node', () => {
    // whoami plays meshd's own service: a task of it runs on the recorded (leader) node.
    const s = load('replicated.json');
    const leader = s.nodes[0]!.ID;
    const svc = s.services.find((x) => x.Spec.Name === 'whoami')!;
    const task = s.tasks.find((t) => t.ServiceID === svc.ID && t.NodeID === leader && t.Status.State === 'running' && t.DesiredState === 'running')!;
    const onMeshd = task.NetworksAttachments!.find((a) => a.Network.Spec?.Name === 'meshd')!.Addresses![0]!.split('/')[0];
    assert.match(onMeshd!, /^\d+\.\d+\.\d+\.\d+$/);
    assert.equal(leaderPeer(s, 'whoami', 'another-node', ['meshd']), onMeshd);
    assert.equal(leaderPeer(s, 'whoami', leader, ['meshd']), undefined, 'the leader follows nobody');
    assert.equal(leaderPeer(s, 'nosuch', 'another-node', ['meshd']), undefined);
    assert.equal(leaderPeer(s, undefined, 'another-node', []), undefined, 'outside a swarm service');
    assert.equal(leaderPeer(s, 'whoami', 'another-node', ['other']), undefined, 'not on the network meshd reaches it by');
  });
});
