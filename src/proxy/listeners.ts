// Opens and closes the published ports as the table changes. A port that cannot
// be opened (in use, not permitted) is logged, shown on /api/routes and tried
// again on the next table change; the other ports keep serving.
import type net from 'node:net';
import type { Logger } from '../core/log.js';
import type { Mode } from '../table/spec.js';
import type { Table } from '../table/table.js';
import type { ProxyContext } from './context.js';
import { createHttpsServer } from './https.js';
import { createPlainServer } from './plain.js';
import { createTcpServer } from './tcp.js';

interface Listener {
  mode: Mode;
  server: net.Server;
}

/** Which published ports serve, and why the others cannot: what the admin API shows. */
export interface ListenerState {
  readonly ports: number[];
  readonly failures: ReadonlyMap<number, string>;
}

export class Listeners implements ListenerState {
  readonly #ctx: ProxyContext;
  readonly #host: string;
  readonly #log: Logger;
  readonly #open = new Map<number, Listener>();
  /** Ports that failed to open, with the reason. */
  readonly failures = new Map<number, string>();
  #pending: Promise<void> = Promise.resolve();
  #closing: net.Server[] = [];

  constructor(ctx: ProxyContext, host: string, log: Logger) {
    this.#ctx = ctx;
    this.#host = host;
    this.#log = log;
  }

  /** Serialised: a reconcile waits for the previous one, so a port is never opened twice. */
  reconcile(): Promise<void> {
    this.#pending = this.#pending.then(() => this.#reconcile());
    return this.#pending;
  }

  async #reconcile(): Promise<void> {
    const wanted = this.#ctx.table.ports;
    for (const [port, l] of this.#open) {
      const entry = wanted.get(port);
      if (entry && entry.mode === l.mode) continue;
      this.#open.delete(port);
      this.#log.info({ port, mode: l.mode }, 'closing listener');
      // Stop accepting now; connections already open finish (or drain) on their own.
      void closeServer(l.server);
    }
    for (const f of [...this.failures.keys()]) if (!wanted.has(f)) this.failures.delete(f);
    for (const [port, entry] of wanted) {
      if (this.#open.has(port)) continue;
      const server = entry.mode === 'http' ? createPlainServer(this.#ctx, port) : entry.mode === 'https' ? createHttpsServer(this.#ctx, port) : createTcpServer(this.#ctx, port);
      try {
        await listen(server, this.#host, port);
        // Accept errors (out of descriptors, say) cost one client, never the process.
        server.on('error', (err: NodeJS.ErrnoException) => this.#log.warn({ port, err: err.message, code: err.code }, 'published port error'));
        this.#open.set(port, { mode: entry.mode, server });
        this.failures.delete(port);
        this.#log.info({ port, mode: entry.mode }, 'listening');
      } catch (err) {
        const reason = (err as Error).message;
        this.failures.set(port, reason);
        this.#log.error({ port, mode: entry.mode, err: reason }, 'cannot open published port');
      }
    }
  }

  get ports(): number[] {
    return [...this.#open.keys()];
  }

  /**
   * Stops accepting on every port. Open connections finish on their own (see
   * Table.close); the promise resolves when the last one has closed.
   */
  async close(): Promise<void> {
    await this.#pending;
    this.#closing = [...this.#open.values()].map((l) => l.server);
    this.#open.clear();
    await Promise.all(this.#closing.map(closeServer));
  }

  /** Ends the connections that outlived the drain timeout. */
  forceClose(): void {
    for (const s of this.#closing) (s as { closeAllConnections?: () => void }).closeAllConnections?.();
  }
}

/**
 * Stops accepting on every port and lets in-flight work finish until
 * `deadline` (ms since the epoch), then ends what is left.
 */
export async function drain(listeners: Listeners, table: Table, deadline: number): Promise<void> {
  const closed = listeners.close();
  table.close();
  while (Date.now() < deadline && [...table.allBackends()].some((b) => b.active > 0)) await new Promise((r) => setTimeout(r, 50));
  for (const b of table.allBackends()) b.close(true);
  listeners.forceClose();
  await closed;
}

function listen(server: net.Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, backlog: 1024 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    // HTTP servers: idle keep-alive connections would hold close() open.
    (server as { closeIdleConnections?: () => void }).closeIdleConnections?.();
  });
}
