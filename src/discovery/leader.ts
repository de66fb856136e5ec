// Which meshd orders ACME certificates in a swarm: the one whose engine is the
// Raft leader, read from the nodes list every snapshot already holds. Exactly
// one node is leader at a time; while an election runs there may be none, and
// then nobody orders until the next snapshot names one.
import type { SwarmNode, SwarmSnapshot } from './snapshot.js';

/** Whether the engine with node ID `self` (its `/info` Swarm.NodeID) is the swarm's leader. */
export function isLeader(nodes: SwarmNode[], self: string | undefined): boolean {
  return self !== undefined && nodes.some((n) => n.ID === self && n.ManagerStatus?.Leader === true);
}

/**
 * The address of meshd's own task on the leader's node, where a manager that
 * does not order follows the ordering instance's tokens and certificates;
 * undefined when it is this node, or not known (yet).
 */
export function leaderPeer(snapshot: SwarmSnapshot, service: string | undefined, self: string | undefined, networks: string[]): string | undefined {
  const leader = snapshot.nodes.find((n) => n.ManagerStatus?.Leader === true);
  if (!leader || leader.ID === self || !service) return undefined;
  const svc = snapshot.services.find((s) => s.Spec.Name === service);
  const task = snapshot.tasks.find((t) => t.ServiceID === svc?.ID && t.NodeID === leader.ID && t.Status.State === 'running' && t.DesiredState === 'running');
  const names = new Map(snapshot.networks.map((n) => [n.Id, n.Name]));
  for (const att of task?.NetworksAttachments ?? []) {
    const name = att.Network.Spec?.Name ?? names.get(att.Network.ID);
    const ok = name !== 'ingress' && (networks.length === 0 || networks.includes(att.Network.ID) || (name !== undefined && networks.includes(name)));
    const addr = att.Addresses?.[0];
    if (ok && addr) return addr.split('/')[0];
  }
  return undefined;
}
