// The plain data that discovery hands to compile(): the parts of the Docker
// Engine API answers meshd reads, typed narrowly. Field names and shapes are the
// engine's own (GET /services, /tasks, /nodes, /networks), so a recorded API
// answer is a valid snapshot as it stands.

export interface PortConfig {
  Protocol?: 'tcp' | 'udp' | 'sctp';
  TargetPort?: number;
  PublishedPort?: number;
  PublishMode?: 'ingress' | 'host';
}

export interface SwarmService {
  ID: string;
  /** Bumped by the engine on every change to the service (spec or endpoint). */
  Version?: { Index?: number };
  CreatedAt?: string;
  UpdatedAt?: string;
  Spec: {
    Name: string;
    Labels?: Record<string, string>;
    Mode?: { Replicated?: { Replicas?: number }; Global?: object };
    TaskTemplate?: { ContainerSpec?: { Env?: string[] }; Networks?: { Target: string; Aliases?: string[] }[] };
    EndpointSpec?: { Mode?: 'vip' | 'dnsrr'; Ports?: PortConfig[] };
  };
  Endpoint?: { Ports?: PortConfig[] };
}

export type TaskState =
  | 'new' | 'allocated' | 'pending' | 'assigned' | 'accepted' | 'preparing' | 'ready'
  | 'starting' | 'running' | 'complete' | 'shutdown' | 'failed' | 'rejected'
  | 'remove' | 'orphaned';

export interface SwarmTask {
  ID: string;
  ServiceID: string;
  NodeID?: string;
  Slot?: number;
  DesiredState: TaskState;
  Status: { State: TaskState; Timestamp?: string; ContainerStatus?: { ContainerID?: string } };
  NetworksAttachments?: { Network: { ID: string; Spec?: { Name?: string } }; Addresses?: string[] }[];
}

export interface SwarmNode {
  ID: string;
  Description?: { Hostname?: string };
  Status?: { State?: string; Addr?: string };
  Spec?: { Availability?: string; Role?: string };
  /** Managers only: whether this one is the Raft leader. */
  ManagerStatus?: { Leader?: boolean; Reachability?: string; Addr?: string };
}

export interface SwarmNetwork {
  Id: string;
  Name: string;
  Driver?: string;
  Scope?: string;
}

/** What discovery knows about meshd's own place in the swarm. */
export interface SelfInfo {
  /** Names or IDs of the networks meshd is attached to; empty when unknown (not in a container). */
  networks: string[];
  /** Whether this node's kernel offers IPVS (Docker's own routing mesh needs it). */
  ipvs: boolean;
  /** meshd's own swarm service, when it runs as one (its instances are its peers). */
  service?: string;
}

export interface SwarmSnapshot {
  services: SwarmService[];
  tasks: SwarmTask[];
  nodes: SwarmNode[];
  networks: SwarmNetwork[];
}

/**
 * What changed from one snapshot to the next, as the peer stream's deltas say
 * it: services and tasks added or changed (whole), the IDs of those removed,
 * and nodes and networks (whole lists) when they changed. Applied in that
 * order (removals first) to objects kept by ID, a changed object keeps its
 * place and a new one goes last, as in a Map.
 */
export interface SwarmChange {
  services: SwarmService[];
  removedServices: string[];
  tasks: SwarmTask[];
  removedTasks: string[];
  nodes?: SwarmNode[] | undefined;
  networks?: SwarmNetwork[] | undefined;
}
