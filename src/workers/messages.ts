// What the primary and its workers say to each other over the cluster's IPC
// channel (advanced serialization: Maps and Buffers cross as they are).
import type { Config } from '../config.js';
import type { Notice, RouteSpec, RoutingTable, TlsFiles } from '../table/spec.js';
import type { ChallengeSnapshot } from '../tls/challenges.js';
import type { StatsReport } from './stats.js';

/** The health flags the primary owns or relays (draining comes with the table). */
export type RelayedFlag = 'pending' | 'activeDown' | 'ejected' | 'failed';
export const RELAYED_FLAGS: readonly RelayedFlag[] = ['pending', 'activeDown', 'ejected', 'failed'];

export interface FlagChange {
  route: string;
  backend: string;
  flag: RelayedFlag;
  value: boolean;
}

export type ToWorker =
  | { t: 'init'; config: Config; worker: number; ticketKeys: Buffer }
  /** A table, with every backend's health flags as the primary has them. */
  | { t: 'table'; version: number; table: RoutingTable; flags: FlagChange[] }
  /**
   * What changed since table `base`, for a worker that has it: routes added
   * or changed (with their backends' flags), the keys of those removed, the
   * notices when they changed, and the certificate files.
   */
  | { t: 'routes'; version: number; base: number; routes: RouteSpec[]; removed: string[]; notices?: Notice[] | undefined; tls: TlsFiles | undefined; flags: FlagChange[] }
  | ({ t: 'health' } & FlagChange)
  | { t: 'certificate'; names: string[]; certPem: string; keyPem: string }
  | { t: 'challenges'; seq: number; snapshot: ChallengeSnapshot }
  | { t: 'stats'; id: number }
  | { t: 'stop' };

export type FromWorker =
  /** Listening for messages: the primary may send init and the current state. */
  | { t: 'ready' }
  | { t: 'applied'; version: number; ports: number[]; failures: Map<number, string> }
  /** Routes came that do not follow the table this worker has: it wants the whole table. */
  | { t: 'resync'; version: number }
  | { t: 'challenges'; seq: number }
  /** A flag the worker's own traffic changed (passive ejection). */
  | ({ t: 'health' } & FlagChange)
  /** A slice of its counters' increments since its previous report; `last` ends the answer. */
  | { t: 'stats'; id: number; report: StatsReport; last: boolean };
