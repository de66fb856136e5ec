// Swarm discovery: reads services, tasks, nodes and networks from a Docker
// engine (GET requests only; the client type below admits no other call) and
// hands each snapshot on. Tasks are polled (the engine emits no task events);
// service, node and network events trigger an immediate re-list; a full resync
// runs on its own interval. When the engine is unreachable the last snapshot
// stays in force and the reads are retried with backoff.
import fs from 'node:fs';
import Docker from 'dockerode';
import type { Logger } from '../core/log.js';
import type { SelfInfo, SwarmSnapshot } from './snapshot.js';

/** The read-only part of the Docker API meshd uses. */
export type DockerReader = Pick<Docker, 'listServices' | 'listTasks' | 'listNodes' | 'listNetworks' | 'getEvents' | 'info'> & {
  getContainer(id: string): Pick<Docker.Container, 'inspect'>;
};

export function dockerFromHost(dockerHost: string): DockerReader {
  const url = new URL(dockerHost);
  if (url.protocol === 'unix:') return new Docker({ socketPath: url.pathname });
  if (url.protocol === 'tcp:' || url.protocol === 'http:') return new Docker({ host: url.hostname, port: Number(url.port || 2375), protocol: 'http' });
  throw new Error(`unsupported Docker host ${dockerHost}: use unix:///path or tcp://host:port`);
}

export interface EngineInfo {
  role: 'manager' | 'worker';
  nodeId: string | undefined;
  /** Hosts of the swarm's managers as this engine knows them (`Swarm.RemoteManagers`), workers' engines included. */
  managers: string[];
}

/** The engine's role (managers list services and tasks; workers' engines refuse to), its swarm node ID and the managers' hosts. */
export async function engineInfo(docker: DockerReader): Promise<EngineInfo> {
  const info = await docker.info() as { Swarm?: { ControlAvailable?: boolean; LocalNodeState?: string; NodeID?: string; RemoteManagers?: { Addr?: string }[] | null } };
  const role = info.Swarm?.LocalNodeState === 'active' && !info.Swarm.ControlAvailable ? 'worker' : 'manager';
  // Addr is HOST:PORT of the swarm's control port, `[v6]:2377` for IPv6.
  const managers = (info.Swarm?.RemoteManagers ?? []).map((m) => /^(.+):\d+$/.exec(m.Addr ?? '')?.[1]).filter((h): h is string => !!h);
  return { role, nodeId: info.Swarm?.NodeID || undefined, managers: [...new Set(managers)].sort() };
}

export interface SwarmDiscoveryOptions {
  docker: DockerReader;
  log: Logger;
  taskPollInterval: number;
  resyncInterval: number;
  onSnapshot: (snapshot: SwarmSnapshot) => void;
  onError: (err: unknown) => void;
}

/** After an event, tasks are polled every BURST_POLL_MS for BURST_MS. */
const BURST_MS = 3000;
const BURST_POLL_MS = 200;

/** Longest wait between reads while the engine is unreachable. */
export const MAX_BACKOFF = 8_000;

export class SwarmDiscovery {
  readonly #o: SwarmDiscoveryOptions;
  #snapshot: SwarmSnapshot | undefined;
  #lastFull = 0;
  #fullWanted = true;
  #timer: NodeJS.Timeout | undefined;
  #events: NodeJS.ReadableStream | undefined;
  #failures = 0;
  #burstUntil = 0;
  #stopped = false;
  #running: Promise<void> | undefined;

  constructor(options: SwarmDiscoveryOptions) {
    this.#o = options;
  }

  start(): void {
    this.#schedule(0);
  }

  get snapshot(): SwarmSnapshot | undefined {
    return this.#snapshot;
  }

  #schedule(delay: number): void {
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#tick(), delay);
  }

  /**
   * Re-lists now (coalescing with a run already under way), then polls tasks
   * fast for a moment: after a service update or scale the orchestrator moves
   * tasks to shutdown or running within the next second, and each of them should
   * leave or join the table as soon as it does.
   */
  refreshSoon(full: boolean): void {
    if (full) this.#fullWanted = true;
    this.#burstUntil = Date.now() + BURST_MS;
    this.#schedule(20);
  }

  async #tick(): Promise<void> {
    if (this.#running) return;
    this.#running = this.#read();
    try {
      await this.#running;
      this.#failures = 0;
      this.#schedule(Date.now() < this.#burstUntil ? Math.min(BURST_POLL_MS, this.#o.taskPollInterval) : this.#o.taskPollInterval);
    } catch (err) {
      this.#failures++;
      this.#fullWanted = true;
      this.#o.onError(err);
      this.#schedule(Math.min(this.#o.taskPollInterval * 2 ** this.#failures, MAX_BACKOFF));
    } finally {
      this.#running = undefined;
    }
  }

  async #read(): Promise<void> {
    const d = this.#o.docker;
    const full = this.#fullWanted || !this.#snapshot || Date.now() - this.#lastFull >= this.#o.resyncInterval;
    if (full) {
      this.#fullWanted = false;
      const [services, tasks, nodes, networks] = await Promise.all([d.listServices(), d.listTasks(), d.listNodes(), d.listNetworks()]);
      this.#snapshot = { services, tasks, nodes, networks } as unknown as SwarmSnapshot;
      this.#lastFull = Date.now();
      this.#watchEvents();
    } else {
      const tasks = await d.listTasks();
      this.#snapshot = { ...this.#snapshot!, tasks: tasks as unknown as SwarmSnapshot['tasks'] };
    }
    this.#o.onSnapshot(this.#snapshot);
  }

  #watchEvents(): void {
    if (this.#events || this.#stopped) return;
    const filters = { type: ['service', 'node', 'network'] as ('service' | 'node' | 'network')[] };
    this.#o.docker.getEvents({ filters }).then((stream) => {
      if (this.#stopped) return void (stream as unknown as { destroy(): void }).destroy();
      this.#events = stream;
      stream.on('data', () => this.refreshSoon(true));
      const lost = () => {
        if (this.#events !== stream) return;
        this.#events = undefined;
        this.#o.log.warn('Docker event stream ended; relying on polling until it reconnects');
        this.#fullWanted = true;
      };
      stream.on('error', lost);
      stream.on('end', lost);
      stream.on('close', lost);
    }, (err: unknown) => this.#o.onError(err));
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    (this.#events as unknown as { destroy?(): void } | undefined)?.destroy?.();
    this.#events = undefined;
  }
}

/** meshd's own container ID, when it runs in one (read from the hostname bind mount). */
function ownContainerId(mountinfo = '/proc/self/mountinfo'): string | undefined {
  try {
    const m = /\/containers\/([0-9a-f]{64})\/hostname/.exec(fs.readFileSync(mountinfo, 'utf8'));
    return m?.[1];
  } catch {
    return undefined;
  }
}

/** Which networks meshd is attached to, its own service, and whether this node has IPVS. */
export async function selfInfo(docker: DockerReader, log: Logger): Promise<SelfInfo> {
  const ipvs = fs.existsSync('/proc/net/ip_vs');
  const id = ownContainerId();
  if (!id) return { networks: [], ipvs };
  try {
    const info = await docker.getContainer(id).inspect();
    const nets = info.NetworkSettings?.Networks ?? {};
    const service = info.Config?.Labels?.['com.docker.swarm.service.name'];
    return {
      networks: Object.entries(nets).flatMap(([name, n]) => [name, (n as { NetworkID?: string }).NetworkID ?? name]),
      ipvs,
      ...(service ? { service } : {}),
    };
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'cannot inspect own container; reaching tasks on any shared network');
    return { networks: [], ipvs };
  }
}
