// Picks and starts the route source this instance uses: the routes file, the
// Docker API (on a manager, which also serves its peers), or a manager's meshd
// (on a worker). Every source ends in the same callback with a compiled table.
// ACME rides along: the source says whether this instance orders, carries the
// ordering instance's tokens and certificates to the others, and relays them
// on a manager that does not order (it follows the leader's instance for them).
import type { Config } from '../config.js';
import type { Logger } from '../core/log.js';
import { readToken } from '../core/token.js';
import { Compiler, type CompilerUpdate } from '../table/incremental.js';
import type { CompileDefaults, RouteChanges, RoutingTable } from '../table/spec.js';
import type { AcmePeers } from '../tls/acme-coordinator.js';
import type { ChallengeSet } from '../tls/challenges.js';
import { ContainerWatcher } from './container-events.js';
import { FileDiscovery } from './file.js';
import { isLeader, leaderPeer } from './leader.js';
import { ACK_TIMEOUT_MS, PeerFollower, PeerServer, type AcmeLines } from './peer.js';
import type { SwarmSnapshot } from './snapshot.js';
import { dockerFromHost, engineInfo, selfInfo, SwarmDiscovery, type DockerReader } from './swarm.js';

export interface Source {
  /** What this instance is: file, manager or worker. */
  role: 'file' | 'manager' | 'worker';
  /** Where this instance sends ACME certificates and waits for tokens to be answered; none without followers. */
  peers?: AcmePeers | undefined;
  /** On a worker, the manager instance followed now, if any. */
  following?: () => string | undefined;
  stop(): Promise<void>;
}

/** ACME's part of the source: the shared token set, and what reaches this instance from the ordering one. */
export interface SourceAcme {
  challenges: ChallengeSet;
  /** Whether this instance is the one that orders; called again when that changes. */
  onOrdering: (ordering: boolean) => void;
  onCertificate: (names: string[], certPem: string, keyPem: string) => void;
  onBadLine: (reason: string) => void;
}

export interface SourceDeps {
  log: Logger;
  defaults: CompileDefaults;
  /** `changes`: the routes that differ from the previous table, when the source knows. */
  onTable: (table: RoutingTable, changes?: RouteChanges) => void;
  onError: (err: unknown) => void;
  /** A task's container died or turned unhealthy: take it out now. */
  onTaskFailed: (task: string, reason: string) => void;
  docker?: DockerReader | undefined;
  /** Cancels a start that still waits on the engine. */
  signal?: AbortSignal | undefined;
  acme?: SourceAcme | undefined;
}

export class SourceError extends Error {}

/** `p`, or a rejection with the signal's reason as soon as it is aborted. */
function unlessAborted<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  return new Promise<T>((resolve, reject) => {
    const abort = () => reject(signal.reason);
    if (signal.aborted) return abort();
    signal.addEventListener('abort', abort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', abort));
  });
}

/** Typed peer lines into the token set and the caller's hands; `settle` waits for this instance's own followers. */
function acmeLines(acme: SourceAcme, settle?: () => Promise<unknown>): AcmeLines {
  return {
    onChallenges: async (tokens) => {
      acme.challenges.apply(tokens);
      await settle?.();
    },
    onCertificate: acme.onCertificate,
    onBadLine: acme.onBadLine,
  };
}

export async function startSource(config: Config, deps: SourceDeps): Promise<Source> {
  const { log, defaults, onTable, onError, onTaskFailed, acme } = deps;
  if (config.provider === 'file') {
    const file = new FileDiscovery({ path: config.routes!, defaults, log, onTable, onError });
    file.start();
    acme?.onOrdering(true);
    return { role: 'file', stop: async () => file.stop() };
  }

  const docker = deps.docker ?? dockerFromHost(config.dockerHost);
  // Engine calls have no timeout of their own; a stop must not wait on them.
  const self = await unlessAborted(selfInfo(docker, log), deps.signal);
  let role = config.role === 'auto' ? undefined : config.role;
  // The engine's node ID tells whether this instance is the leader's, which orders certificates.
  let nodeId: string | undefined;
  let askingNodeId = false;
  const askNodeId = () => {
    if (nodeId || askingNodeId) return;
    askingNodeId = true;
    engineInfo(docker).then((info) => {
      nodeId = info.nodeId;
      // A snapshot comes only when the swarm changes: decide with the last one now.
      if (nodeId && swarm?.snapshot) lead(swarm.snapshot);
    }, () => undefined).finally(() => { askingNodeId = false; });
  };
  if (!role) {
    try {
      const info = await unlessAborted(engineInfo(docker), deps.signal);
      role = info.role;
      nodeId = info.nodeId;
    } catch (err) {
      if (deps.signal?.aborted) throw err;
      log.warn({ err: (err as Error).message }, 'cannot ask the engine for its role; acting as manager and retrying its API');
      role = 'manager';
    }
  }
  const compiler = new Compiler({ defaults, network: config.network, selfNetworks: self.networks, ipvs: self.ipvs, domain: config.domain, compat: { kinds: config.compat, entrypoints: config.compatEntrypoint } });
  const toTable = ({ table, changes }: CompilerUpdate) => {
    try {
      onTable(table, changes);
    } catch (err) {
      // The compiler has moved past a table meshd did not take: the next whole snapshot is compiled afresh.
      compiler.reset();
      throw err;
    }
  };
  const token = readToken(config.peerTokenFile);
  log.info({ role, networks: self.networks, ipvs: self.ipvs, network: config.network ?? null, service: self.service ?? null }, 'swarm discovery starting');

  if (role === 'worker') {
    if (!token) throw new SourceError(`--peer-token-file: a worker needs the peer token, and ${config.peerTokenFile} is missing or empty`);
    const peers = config.peers?.includes(',') || config.peers?.includes(':')
      ? config.peers.split(',').map((p) => p.trim())
      : config.peers ?? (self.service ? `tasks.${self.service}` : undefined);
    if (!peers) throw new SourceError('--peers: a worker outside a swarm service must be told where manager instances are');
    const follower = new PeerFollower({
      peers, port: config.peerAddr.port, token, log, onSnapshot: (s) => toTable(compiler.update(s)), onChange: (c) => toTable(compiler.change(c)), onError,
      ...(typeof peers === 'string' ? { fallbackHosts: async () => (await engineInfo(docker)).managers } : {}),
      ...(acme ? { acme: acmeLines(acme) } : {}),
    });
    follower.start();
    acme?.onOrdering(false);
    const watcher = new ContainerWatcher(docker, log, (task, reason) => {
      onTaskFailed(task, reason);
      follower.reportTaskFailed(task).catch((err: unknown) => log.warn({ task, err: (err as Error).message }, 'cannot tell the manager about a failed task'));
    });
    watcher.start();
    return { role, following: () => follower.current, stop: async () => { watcher.stop(); follower.stop(); } };
  }

  let swarm: SwarmDiscovery | undefined;
  const taskFailed = (task: string, reason: string) => {
    onTaskFailed(task, reason);
    swarm?.refreshSoon(false);
  };
  let server: PeerServer | undefined;
  let peers: AcmePeers | undefined;
  let unwatch: (() => void) | undefined;
  if (token) {
    const s = server = new PeerServer(token, log, (task) => taskFailed(task, 'reported by a peer'));
    await s.listen(config.peerAddr.host, config.peerAddr.port);
    log.info({ addr: `${config.peerAddr.host}:${config.peerAddr.port}` }, 'serving swarm snapshots to peers');
    if (acme) {
      unwatch = acme.challenges.onChange((tokens) => s.publishChallenges(tokens));
      peers = {
        certificate: (names, certPem, keyPem) => s.publishCertificate(names, certPem, keyPem),
        propagate: async () => {
          if (!(await s.acknowledged())) log.warn({ followers: s.followers, waited: ACK_TIMEOUT_MS }, 'not every follower acknowledged the ACME tokens in time; validating anyway');
        },
      };
    }
  } else {
    log.warn({ file: config.peerTokenFile }, 'no peer token: worker instances cannot follow this one');
  }

  // A manager that does not order follows the leader's instance for tokens and certificates, and passes them on.
  let relay: { peer: string; follower: PeerFollower } | undefined;
  let relayError: string | undefined;
  const follow = (peer: string | undefined) => {
    if (relay?.peer === peer) return;
    relay?.follower.stop();
    relay = undefined;
    if (!peer || !token || !acme) return;
    const follower = new PeerFollower({
      peers: [peer], port: config.peerAddr.port, token, log,
      onSnapshot: () => undefined,
      onError: (err) => {
        const message = (err as Error).message;
        if (message !== relayError) log.warn({ peer, err: message }, 'cannot follow the ordering instance for ACME tokens and certificates');
        relayError = message;
      },
      // Bounded below the leader's own wait, so this acknowledgement can still count there.
      acme: acmeLines(acme, () => server?.acknowledged(undefined, ACK_TIMEOUT_MS - 1000) ?? Promise.resolve()),
    });
    relay = { peer, follower };
    follower.start();
  };
  const lead = (snapshot: SwarmSnapshot) => {
    if (!acme) return;
    askNodeId();
    const leading = isLeader(snapshot.nodes, nodeId);
    acme.onOrdering(leading);
    const peer = leading ? undefined : leaderPeer(snapshot, self.service, nodeId, config.network ? [config.network] : self.networks);
    follow(peer && `${peer.includes(':') ? `[${peer}]` : peer}:${config.peerAddr.port}`);
  };

  swarm = new SwarmDiscovery({
    docker, log,
    taskPollInterval: config.taskPollInterval,
    resyncInterval: config.resyncInterval,
    compat: config.compat.length > 0,
    ownService: self.service,
    onSnapshot: (snapshot, change) => {
      // What changed is cheaper to compile and to publish than the whole snapshot.
      toTable(change ? compiler.change(change) : compiler.update(snapshot));
      server?.publish(snapshot, change);
      lead(snapshot);
    },
    onError,
  });
  swarm.start();
  const watcher = new ContainerWatcher(docker, log, taskFailed);
  watcher.start();
  return {
    role,
    peers,
    stop: async () => {
      watcher.stop();
      swarm?.stop();
      unwatch?.();
      follow(undefined);
      await server?.close();
    },
  };
}
