// What the proxies share: the live table (read only), timeouts, and the counters
// the admin API exports. The proxies never call the control plane.
import type { Logger } from '../core/log.js';
import type { ErrorCode } from '../core/errors.js';
import type { Table } from '../table/table.js';

export class ProxyStats {
  /** Requests or connections meshd ended itself, by error code. */
  readonly answered = new Map<ErrorCode, number>();
  /** Requests or connections sent to a second backend after the first failed before any byte went upstream. */
  retries = 0;
  /** Open client connections, L4 and L7. */
  connections = 0;

  count(code: ErrorCode): void {
    this.answered.set(code, (this.answered.get(code) ?? 0) + 1);
  }
}

export interface ProxyContext {
  table: Table;
  log: Logger;
  stats: ProxyStats;
  connectTimeout: number;
  responseTimeout: number;
}
