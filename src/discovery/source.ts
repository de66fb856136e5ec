// Picks and starts the route source this instance uses: the routes file, the
// Docker API (on a manager, which also serves its peers), or a manager's meshd
// (on a worker). Every source ends in the same callback with a compiled table.
import type { Config } from '../config.js';
import type { Logger } from '../core/log.js';
import { readToken } from '../core/token.js';
import { compile } from '../table/compile.js';
import type { CompileDefaults, RoutingTable } from '../table/spec.js';
import { ContainerWatcher } from './container-events.js';
import { FileDiscovery } from './file.js';
import { PeerFollower, PeerServer } from './peer.js';
import type { SwarmSnapshot } from './snapshot.js';
import { detectRole, dockerFromHost, selfInfo, SwarmDiscovery, type DockerReader } from './swarm.js';

export interface Source {
  /** What this instance is: file, manager or worker. */
  role: 'file' | 'manager' | 'worker';
  /** On a worker, the manager instance followed now, if any. */
  following?: () => string | undefined;
  stop(): Promise<void>;
}

export interface SourceDeps {
  log: Logger;
  defaults: CompileDefaults;
  onTable: (table: RoutingTable) => void;
  onError: (err: unknown) => void;
  /** A task's container died or turned unhealthy: take it out now. */
  onTaskFailed: (task: string, reason: string) => void;
  docker?: DockerReader | undefined;
  /** Cancels a start that still waits on the engine. */
  signal?: AbortSignal | undefined;
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

export async function startSource(config: Config, deps: SourceDeps): Promise<Source> {
  const { log, defaults, onTable, onError, onTaskFailed } = deps;
  if (config.provider === 'file') {
    const file = new FileDiscovery({ path: config.routes!, defaults, log, onTable, onError });
    file.start();
    return { role: 'file', stop: async () => file.stop() };
  }

  const docker = deps.docker ?? dockerFromHost(config.dockerHost);
  // Engine calls have no timeout of their own; a stop must not wait on them.
  const self = await unlessAborted(selfInfo(docker, log), deps.signal);
  let role = config.role === 'auto' ? undefined : config.role;
  if (!role) {
    try {
      role = await unlessAborted(detectRole(docker), deps.signal);
    } catch (err) {
      if (deps.signal?.aborted) throw err;
      log.warn({ err: (err as Error).message }, 'cannot ask the engine for its role; acting as manager and retrying its API');
      role = 'manager';
    }
  }
  const toTable = (snapshot: SwarmSnapshot) => onTable(compile(snapshot, { defaults, network: config.network, selfNetworks: self.networks, ipvs: self.ipvs }));
  const token = readToken(config.peerTokenFile);
  log.info({ role, networks: self.networks, ipvs: self.ipvs, network: config.network ?? null, service: self.service ?? null }, 'swarm discovery starting');

  if (role === 'worker') {
    if (!token) throw new SourceError(`--peer-token-file: a worker needs the peer token, and ${config.peerTokenFile} is missing or empty`);
    const peers = config.peers?.includes(',') || config.peers?.includes(':')
      ? config.peers.split(',').map((p) => p.trim())
      : config.peers ?? (self.service ? `tasks.${self.service}` : undefined);
    if (!peers) throw new SourceError('--peers: a worker outside a swarm service must be told where manager instances are');
    const follower = new PeerFollower({ peers, port: config.peerAddr.port, token, log, onSnapshot: toTable, onError });
    follower.start();
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
  if (token) {
    server = new PeerServer(token, log, (task) => taskFailed(task, 'reported by a peer'));
    await server.listen(config.peerAddr.host, config.peerAddr.port);
    log.info({ addr: `${config.peerAddr.host}:${config.peerAddr.port}` }, 'serving swarm snapshots to peers');
  } else {
    log.warn({ file: config.peerTokenFile }, 'no peer token: worker instances cannot follow this one');
  }
  swarm = new SwarmDiscovery({
    docker, log,
    taskPollInterval: config.taskPollInterval,
    resyncInterval: config.resyncInterval,
    onSnapshot: (snapshot) => {
      toTable(snapshot);
      server?.publish(snapshot);
    },
    onError,
  });
  swarm.start();
  const watcher = new ContainerWatcher(docker, log, taskFailed);
  watcher.start();
  return {
    role,
    stop: async () => {
      watcher.stop();
      swarm?.stop();
      await server?.close();
    },
  };
}
