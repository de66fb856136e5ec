// Loopback helpers for tests: free ports, backends we can kill, bounded waits.
import http from 'node:http';
import net from 'node:net';

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** An HTTP backend that answers with its name; `kill()` drops it and every open socket at once. */
export class Backend {
  readonly server: http.Server;
  readonly sockets = new Set<net.Socket>();
  hits = 0;
  port = 0;
  lastHeaders: http.IncomingHttpHeaders = {};

  constructor(readonly name: string, handler?: http.RequestListener) {
    this.server = http.createServer(handler ?? ((req, res) => {
      this.hits++;
      this.lastHeaders = req.headers;
      if (req.url === '/health') return void res.end('ok');
      res.setHeader('x-backend', name);
      res.end(name);
    }));
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.once('close', () => this.sockets.delete(s));
    });
  }

  async start(port = 0): Promise<this> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => resolve());
    });
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async kill(): Promise<void> {
    const closed = new Promise((resolve) => this.server.close(resolve));
    for (const s of this.sockets) s.destroy();
    await closed;
  }
}

/** Polls `check` every 25 ms until it returns a truthy value or `ms` pass. */
export async function waitFor<T>(check: () => T | Promise<T>, ms: number, what: string): Promise<NonNullable<T>> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

export interface Reply {
  status: number;
  body: string;
  headers: http.IncomingHttpHeaders;
}

/** A plain GET, by default through a fresh connection (no pooling), so each request is independent. */
export function get(port: number, path = '/', headers: http.OutgoingHttpHeaders = {}, agent: http.Agent | false = false, host = '127.0.0.1'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host, port, path, headers, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers }));
      res.on('error', reject);
    });
    req.setTimeout(5000, () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
  });
}
