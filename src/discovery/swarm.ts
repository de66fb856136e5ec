// Swarm discovery: reads services, tasks, nodes and networks from a Docker
// engine (GET requests only; the client type below admits no other call) and
// hands each snapshot on. Tasks are polled (the engine emits no task events);
// service, node and network events trigger an immediate re-list; a full resync
// runs on its own interval. When the engine is unreachable the last snapshot
// stays in force and the reads are retried with backoff.
import fs from 'node:fs';
import Docker from 'dockerode';
import type { Logger } from '../core/log.js';
import type { SelfInfo, SwarmChange, SwarmNetwork, SwarmNode, SwarmService, SwarmSnapshot, SwarmTask } from './snapshot.js';

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
  /**
   * Whether --compat is on: services without meshd.publish may then route (by
   * traefik.* labels, which need no traefik.enable, or by environment, which the
   * API cannot filter on), so every service is listed.
   */
  compat?: boolean;
  /** meshd's own service, listed too: where its tasks run tells where the ordering instance is. */
  ownService?: string | undefined;
  /** Each changed snapshot, and what changed since the one before (none with the first). */
  onSnapshot: (snapshot: SwarmSnapshot, change: SwarmChange | undefined) => void;
  onError: (err: unknown) => void;
}

/** After an event, tasks are polled every BURST_POLL_MS for BURST_MS. */
const BURST_MS = 3000;
const BURST_POLL_MS = 200;

/** Longest wait between reads while the engine is unreachable. */
export const MAX_BACKOFF = 8_000;

/**
 * Most `service=` or `id=` values in one task list: the engine looks each
 * service up, and the values ride in the URL. Past this many services, one
 * unfiltered list of running tasks costs the engine less.
 */
export const TASK_FILTER_MAX = 200;

/** The label that makes a service routable without --compat. */
const PUBLISH_LABEL = 'meshd.publish';

interface Versioned {
  ID: string;
  Version?: { Index?: number };
}

/** A narrowed engine object and the version it was read at. */
interface Kept<T> {
  index: number | undefined;
  value: T;
}

/**
 * Engine objects narrowed by `narrow` and keyed by ID; one whose Version.Index
 * did not move keeps its previous object, so an unchanged swarm is neither
 * narrowed again nor handed on, and consumers can compare objects by identity.
 * Objects kept stay in their place and new ones go last, as a follower's
 * mirror has them. Also the objects new or changed, and the IDs gone.
 */
function keep<R extends Versioned, T>(raw: R[], before: Map<string, Kept<T>>, narrow: (r: R) => T): { kept: Map<string, Kept<T>>; changed: T[]; removed: string[] } {
  const listed = new Map<string, R>();
  for (const r of raw) listed.set(r.ID, r);
  const kept = new Map<string, Kept<T>>();
  const changed: T[] = [];
  const removed: string[] = [];
  const put = (id: string, r: R, old: Kept<T> | undefined) => {
    const index = r.Version?.Index;
    if (old && index !== undefined && old.index === index) return void kept.set(id, old);
    const k = { index, value: narrow(r) };
    kept.set(id, k);
    changed.push(k.value);
  };
  for (const [id, old] of before) {
    const r = listed.get(id);
    if (!r) removed.push(id);
    else put(id, r, old);
  }
  for (const [id, r] of listed) if (!before.has(id)) put(id, r, undefined);
  return { kept, changed, removed };
}

/** `o` without its undefined members, so narrowed objects equal their JSON round trip. */
function defined<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === undefined) delete o[k];
  return o;
}

// The engine's answers carry much more (PreviousSpec, placement platforms,
// network IPAM, TLS info): meshd keeps and passes on the fields snapshot.ts declares.
type Raw = Versioned & Record<string, any>;

function narrowService(s: Raw): SwarmService {
  const spec = s.Spec ?? {};
  const template = spec.TaskTemplate;
  return defined({
    ID: s.ID,
    CreatedAt: s.CreatedAt,
    Spec: defined({
      Name: spec.Name,
      Labels: spec.Labels,
      Mode: spec.Mode,
      TaskTemplate: template && defined({
        ContainerSpec: template.ContainerSpec && defined({ Env: template.ContainerSpec.Env }),
        Networks: template.Networks,
      }),
      EndpointSpec: spec.EndpointSpec && defined({ Mode: spec.EndpointSpec.Mode, Ports: spec.EndpointSpec.Ports }),
    }),
    Endpoint: s.Endpoint && defined({ Ports: s.Endpoint.Ports }),
  });
}

function narrowTask(t: Raw): SwarmTask {
  return defined({
    ID: t.ID,
    ServiceID: t.ServiceID,
    NodeID: t.NodeID,
    Slot: t.Slot,
    DesiredState: t.DesiredState,
    Status: defined({ State: t.Status?.State, Timestamp: t.Status?.Timestamp, ContainerStatus: t.Status?.ContainerStatus?.ContainerID ? { ContainerID: t.Status.ContainerStatus.ContainerID } : undefined }),
    NetworksAttachments: (t.NetworksAttachments as Raw[] | undefined)?.map((a) => defined({
      Network: defined({ ID: a.Network?.ID, Spec: a.Network?.Spec?.Name !== undefined ? { Name: a.Network.Spec.Name } : undefined }),
      Addresses: a.Addresses,
    })),
  });
}

function narrowNode(n: Raw): SwarmNode {
  return defined({
    ID: n.ID,
    Description: n.Description && defined({ Hostname: n.Description.Hostname }),
    Status: n.Status && defined({ State: n.Status.State, Addr: n.Status.Addr }),
    Spec: n.Spec && defined({ Availability: n.Spec.Availability, Role: n.Spec.Role }),
    ManagerStatus: n.ManagerStatus && defined({ Leader: n.ManagerStatus.Leader, Reachability: n.ManagerStatus.Reachability, Addr: n.ManagerStatus.Addr }),
  });
}

function narrowNetwork(n: Raw): SwarmNetwork {
  return defined({ Id: n.Id, Name: n.Name, Driver: n.Driver, Scope: n.Scope });
}

function chunks<T>(list: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < list.length; i += size) out.push(list.slice(i, i + size));
  return out;
}

function notFound(err: unknown): boolean {
  return (err as { statusCode?: number }).statusCode === 404;
}

export class SwarmDiscovery {
  readonly #o: SwarmDiscoveryOptions;
  #snapshot: SwarmSnapshot | undefined;
  #services = new Map<string, Kept<SwarmService>>();
  #tasks = new Map<string, Kept<SwarmTask>>();
  /** Nodes and networks, and their JSON to tell a change: they are few. */
  #rest = { nodes: [] as SwarmNode[], networks: [] as SwarmNetwork[], nodesJson: '', networksJson: '' };
  /** The consumer took the last snapshot or change without throwing. */
  #handedOn = false;
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
    let services: ReturnType<typeof keep<Raw, SwarmService>> | undefined;
    let rest = this.#rest;
    if (full) {
      this.#fullWanted = false;
      const [listed, nodes, networks] = await Promise.all([this.#listServices(), d.listNodes(), d.listNetworks()]);
      services = keep(listed, this.#services, narrowService);
      const narrowed = { nodes: (nodes as Raw[]).map(narrowNode), networks: (networks as unknown as Raw[]).map(narrowNetwork) };
      rest = { ...narrowed, nodesJson: JSON.stringify(narrowed.nodes), networksJson: JSON.stringify(narrowed.networks) };
    }
    let tasks: Raw[];
    try {
      tasks = await this.#listTasks(this.#routing(services?.kept ?? this.#services));
    } catch (err) {
      // A service removed since it was listed: list services again at once.
      if (full || !notFound(err)) throw err;
      this.#fullWanted = true;
      return this.#read();
    }
    const t = keep(tasks, this.#tasks, narrowTask);
    const before = this.#rest;
    if (services) {
      this.#services = services.kept;
      this.#rest = rest;
      this.#lastFull = Date.now();
      this.#watchEvents();
    }
    this.#tasks = t.kept;
    const change: SwarmChange = {
      services: services?.changed ?? [], removedServices: services?.removed ?? [], tasks: t.changed, removedTasks: t.removed,
      ...(rest.nodesJson !== before.nodesJson ? { nodes: rest.nodes } : {}),
      ...(rest.networksJson !== before.networksJson ? { networks: rest.networks } : {}),
    };
    const changed = change.services.length || change.removedServices.length || change.tasks.length || change.removedTasks.length || change.nodes || change.networks;
    if (!changed && this.#snapshot) return;
    this.#snapshot = {
      services: [...this.#services.values()].map((k) => k.value),
      tasks: [...this.#tasks.values()].map((k) => k.value),
      nodes: this.#rest.nodes,
      networks: this.#rest.networks,
    };
    // A change follows only a snapshot or change the consumer took without failing.
    const follows = this.#handedOn;
    this.#handedOn = false;
    this.#o.onSnapshot(this.#snapshot, follows ? change : undefined);
    this.#handedOn = true;
  }

  /**
   * Every service, read on full reads only (resync, service events): those that
   * do not route still get their notices (a mistyped label, a port published
   * the standard way). Tasks are read for the routing ones alone.
   */
  async #listServices(): Promise<Raw[]> {
    return await this.#o.docker.listServices() as unknown as Raw[];
  }

  /** Services whose tasks meshd needs: those that can route (all with --compat), and meshd's own. */
  #routing(services: Map<string, Kept<SwarmService>>): Map<string, Kept<SwarmService>> {
    if (this.#o.compat) return services;
    const own = this.#o.ownService;
    return new Map([...services].filter(([, k]) => k.value.Spec.Labels?.[PUBLISH_LABEL] !== undefined || (own !== undefined && k.value.Spec.Name === own)));
  }

  /**
   * The running tasks of `services`. The engine is asked for tasks whose desired
   * state is running, which leaves out the old tasks it keeps (five per slot by
   * default); a task that was running and left that list is asked for by ID, and
   * stays while it still runs (draining) until it stops.
   */
  async #listTasks(services: Map<string, unknown>): Promise<Raw[]> {
    const d = this.#o.docker;
    if (services.size === 0) return [];
    const ids = [...services.keys()];
    const desired = { 'desired-state': ['running'] };
    const listed = ids.length <= TASK_FILTER_MAX
      ? await d.listTasks({ filters: { ...desired, service: ids } }) as Raw[]
      : (await d.listTasks({ filters: desired }) as Raw[]).filter((t) => services.has(t.ServiceID));
    const seen = new Set(listed.map((t) => t.ID));
    const left = [...this.#tasks.values()].filter((k) => !seen.has(k.value.ID) && services.has(k.value.ServiceID)).map((k) => k.value.ID);
    const draining: Raw[] = [];
    for (const chunk of chunks(left, TASK_FILTER_MAX)) draining.push(...await d.listTasks({ filters: { id: chunk } }) as Raw[]);
    return [...listed, ...draining].filter((t) => t.Status?.State === 'running');
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
