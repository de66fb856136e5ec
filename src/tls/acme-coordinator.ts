// What each meshd does about ACME. The instance that orders (file provider: the
// one process; swarm: the meshd on the leader manager) runs an AcmeManager for
// the https routes that ask for it, one certificate per route's hosts; each
// certificate goes into the local store and to the peers. Every other instance
// serves what reaches it over the peer stream, and one that keeps certificates
// (a manager) also adopts it into its --acme-storage, so it does not order
// again when it becomes the leader.
import type { Logger } from '../core/log.js';
import type { RouteSpec } from '../table/spec.js';
import { AcmeManager, normalizeNames, type AcmeOptions, type CertificateStatus } from './acme.js';
import type { ChallengeSet } from './challenges.js';
import type { CertStore } from './store.js';

/** The peer stream, as the ordering or relaying instance sends on it. */
export interface AcmePeers {
  certificate(names: string[], certPem: string, keyPem: string): void;
  /** Resolves once every connected follower answers the current tokens, or after a bounded wait. */
  propagate(): Promise<void>;
}

export interface AcmeCoordinatorOptions {
  acme: Pick<AcmeOptions, 'directoryUrl' | 'email' | 'caFile' | 'storageDir'>;
  certs: CertStore;
  challenges: ChallengeSet;
  log: Logger;
}

/** What /api/routes shows for a route with ACME (no key, ever). */
export interface AcmeRouteStatus extends Omit<CertificateStatus, 'failures'> {
  failures?: number;
  /** Whether this instance is the one that orders. */
  ordering: boolean;
}

/** The store's source name for an ACME certificate. */
export const acmeSource = (names: string[]) => `acme:${names.join(',')}`;

export class AcmeCoordinator {
  readonly #o: AcmeCoordinatorOptions;
  #manager: AcmeManager | undefined;
  #wanted: string[][] = [];
  #ordering = false;
  #attached = false;
  #running = false;
  #peers: AcmePeers | undefined;
  /** Chains served from ACME, by normalised names: to skip repeats and to answer status on instances without a manager. */
  readonly #served = new Map<string, { names: string[]; certPem: string; keyPem: string; notAfter: string }>();
  #transition: Promise<void> = Promise.resolve();

  constructor(options: AcmeCoordinatorOptions) {
    this.#o = options;
  }

  get counters(): { issued: number; failures: number } {
    return this.#manager?.counters ?? { issued: 0, failures: 0 };
  }

  /** The routes in force: each https route with acme wants a certificate for its hosts. */
  setRoutes(routes: RouteSpec[]): void {
    const wanted = routes.filter((r) => r.acme && r.mode === 'https' && r.hosts.length).map((r) => normalizeNames(r.hosts));
    if (JSON.stringify(wanted) === JSON.stringify(this.#wanted)) return;
    this.#wanted = wanted;
    // Also where this instance does not order: status() then lists the routes' certificates.
    this.#manager?.want(wanted);
    this.#update();
  }

  /** Whether this instance is the one that orders (it leads the swarm, or it is the only one). */
  setOrdering(ordering: boolean): void {
    if (ordering === this.#ordering) return;
    this.#ordering = ordering;
    this.#o.log.info({ ordering }, ordering ? 'this instance orders ACME certificates' : 'another instance orders ACME certificates');
    this.#update();
  }

  /**
   * The source is up and this instance's role known. `keeps`: it keeps certificates
   * in storage and may order (file provider, managers); workers only serve what
   * reaches them. `peers`: where certificates go on to (none without followers).
   * Throws when the ACME options cannot be used (an unreadable --acme-ca-file).
   */
  attach(keeps: boolean, peers: AcmePeers | undefined): void {
    if (keeps && !this.#manager) {
      const o = this.#o;
      this.#manager = new AcmeManager({
        ...o.acme, log: o.log, challenges: o.challenges,
        onCertificate: (names, certPem, keyPem) => void this.#serve(names, certPem, keyPem, true),
        propagate: () => this.#peers?.propagate() ?? Promise.resolve(),
      });
      this.#manager.want(this.#wanted);
    }
    this.#peers = peers;
    this.#attached = true;
    for (const c of this.#served.values()) peers?.certificate(c.names, c.certPem, c.keyPem);
    this.#update();
  }

  /** A certificate from the peer stream: served, sent on to this instance's own followers, and kept. */
  async received(names: string[], certPem: string, keyPem: string): Promise<void> {
    const normalized = normalizeNames(names);
    if (!this.#serve(normalized, certPem, keyPem, false)) return;
    await this.#manager?.adopt(normalized, certPem, keyPem);
  }

  /** ACME state of a route's certificate, or undefined when the route does not ask for ACME. */
  status(route: RouteSpec): AcmeRouteStatus | undefined {
    if (!route.acme) return undefined;
    const names = normalizeNames(route.hosts);
    const key = names.join(',');
    const ordering = this.#running;
    const s = this.#manager?.status().find((x) => x.names.join(',') === key);
    if (s) return { ...s, ordering };
    const served = this.#served.get(key);
    return served ? { names, state: 'valid', notAfter: served.notAfter, ordering } : { names, state: 'pending', ordering };
  }

  /** Stops ordering; resolves once an order in flight has ended (the caller bounds the wait). */
  async stop(): Promise<void> {
    this.#attached = false;
    this.#update();
    await this.#transition;
  }

  /** Into the store and on to the peers; false when it is what is already served, or the store refused it. */
  #serve(names: string[], certPem: string, keyPem: string, issuedHere: boolean): boolean {
    const key = names.join(',');
    if (this.#served.get(key)?.certPem === certPem) return false;
    if (!this.#o.certs.put(acmeSource(names), certPem, keyPem)) {
      this.#o.log.warn({ names, from: issuedHere ? 'this instance' : 'a peer' }, 'ACME certificate refused by the store; not served');
      return false;
    }
    const notAfter = this.#o.certs.view().certificates.find((c) => c.source === acmeSource(names))?.notAfter ?? '';
    this.#served.set(key, { names, certPem, keyPem, notAfter });
    this.#peers?.certificate(names, certPem, keyPem);
    return true;
  }

  /** Starts or stops the manager, one transition at a time. */
  #update(): void {
    this.#transition = this.#transition.then(async () => {
      const run = this.#attached && this.#ordering && this.#wanted.length > 0 && this.#manager !== undefined;
      if (run === this.#running) return;
      this.#running = run;
      if (run) await this.#manager!.start();
      else await this.#manager!.stop();
    }).catch((err: unknown) => this.#o.log.error({ err: (err as Error).message }, 'ACME start or stop failed'));
  }
}
