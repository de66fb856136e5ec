// What the proxies share: the live table (read only), timeouts, and the counters
// the admin API exports. The proxies never call the control plane.
import type { Config } from '../config.js';
import type { Logger } from '../core/log.js';
import type { ErrorCode } from '../core/errors.js';
import type { Table } from '../table/table.js';
import type { ChallengeSet } from '../tls/challenges.js';
import type { CertStore } from '../tls/store.js';

export class ProxyStats {
  /** Requests or connections meshd ended itself, by error code. */
  readonly answered = new Map<ErrorCode, number>();
  /** Requests or connections sent to a second backend after the first failed before any byte went upstream. */
  retries = 0;
  /** Open client connections, L4 and L7. */
  connections = 0;
  /** Client limits that tripped, by limit (see LIMITS). */
  readonly limits = new Map<Limit, number>();
  /** TLS handshakes that failed, by reason (see HandshakeFailure). */
  readonly handshakeFailures = new Map<HandshakeFailure, number>();

  count(code: ErrorCode): void {
    this.answered.set(code, (this.answered.get(code) ?? 0) + 1);
  }

  tripped(limit: Limit): void {
    this.limits.set(limit, (this.limits.get(limit) ?? 0) + 1);
  }

  handshakeFailed(reason: HandshakeFailure): void {
    this.handshakeFailures.set(reason, (this.handshakeFailures.get(reason) ?? 0) + 1);
  }
}

/** The limits meshd puts on clients, by the name /metrics reports them under. */
export type Limit = 'client-header-timeout' | 'client-idle-timeout' | 'tcp-idle-timeout' | 'max-connections' | 'route-max-connections' | 'max-header-size' | 'pipeline-depth' | 'h2-rapid-reset';

/** Why a TLS handshake failed, as /metrics reports it: a short, fixed set. */
export type HandshakeFailure = 'no-certificate' | 'protocol-version' | 'no-shared-cipher' | 'plain-http' | 'timeout' | 'reset' | 'other';

/** Client limits from the flags; a route may narrow the last two (meshd.max-connections, meshd.idle-timeout). */
export interface ClientLimits {
  headerTimeout: number;
  idleTimeout: number;
  tcpIdleTimeout: number;
  maxConnections: number;
  maxHeaderSize: number;
}

export interface ProxyContext {
  table: Table;
  log: Logger;
  stats: ProxyStats;
  connectTimeout: number;
  responseTimeout: number;
  limits: ClientLimits;
  /** Certificates for https ports. */
  certs: CertStore;
  /** ACME HTTP-01 tokens that plain-HTTP ports answer themselves; empty unless an order is under way. */
  challenges: ChallengeSet;
}

/** The proxy's settings from the flags, around its table, counters and certificates. */
export function proxyContext(config: Config, parts: Pick<ProxyContext, 'table' | 'log' | 'stats' | 'certs' | 'challenges'>, maxConnections = config.maxConnections): ProxyContext {
  return {
    ...parts, connectTimeout: config.connectTimeout, responseTimeout: config.responseTimeout,
    limits: {
      headerTimeout: config.clientHeaderTimeout, idleTimeout: config.clientIdleTimeout, tcpIdleTimeout: config.tcpIdleTimeout,
      maxConnections, maxHeaderSize: config.maxHeaderSize,
    },
  };
}
