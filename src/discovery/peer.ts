// Peers: only a manager's engine lists services and tasks, so a meshd on a
// manager serves its swarm snapshots to the others, and a meshd on a worker
// follows one manager instance (failing over to the next) and keeps its last
// good table while none answers.
//
// Wire format: GET /v1/snapshots with `Authorization: Bearer <token>` answers an
// NDJSON stream: the current snapshot at once, then each changed one, and an
// empty line every few seconds so a follower can tell a dead peer from a quiet one.
import dns from 'node:dns/promises';
import http from 'node:http';
import type net from 'node:net';
import { Agent, request } from 'undici';
import type { Logger } from '../core/log.js';
import { bearerMatches } from '../core/token.js';
import type { SwarmSnapshot } from './snapshot.js';

export const SNAPSHOTS_PATH = '/v1/snapshots';
/** A worker tells the manager a task's container died, so the manager re-reads tasks at once. */
export const TASK_FAILED_PATH = '/v1/task-failed';
const HEARTBEAT_MS = 5_000;
/**
 * A follower that has never had a snapshot retries this often, for the first
 * START_WINDOW_MS, then at the normal delay: in a fresh deployment the
 * managers' instances start at the same moment (and may take seconds on a busy
 * node), and a worker should serve as soon as one answers.
 */
const START_RETRY_MS = 250;
const START_WINDOW_MS = 10_000;
/**
 * DNS lookup timeout while starting. Swarm's DNS forwards a name it does not
 * know yet (`tasks.<service>` before the task is registered) upstream and fails
 * only after that times out (about 4 s); its own names it answers at once.
 */
const START_DNS_TIMEOUT_MS = 200;

/** Keeps only the tasks compile() can route to (running, or running and draining); history stays home. */
function trimSnapshot(s: SwarmSnapshot): SwarmSnapshot {
  return { ...s, tasks: s.tasks.filter((t) => t.Status.State === 'running') };
}

function readTask(req: http.IncomingMessage, res: http.ServerResponse, onTaskFailed?: (task: string) => void): void {
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (c: string) => { if (body.length < 4096) body += c; });
  req.on('end', () => {
    let task: unknown;
    try {
      task = (JSON.parse(body) as { task?: unknown }).task;
    } catch { /* answered below */ }
    if (typeof task !== 'string' || !/^[a-z0-9]{1,64}$/.test(task)) return void res.writeHead(400).end('body must be {"task": "<task id>"}\n');
    onTaskFailed?.(task);
    res.writeHead(204).end();
  });
}

export class PeerServer {
  readonly #server: http.Server;
  readonly #streams = new Set<http.ServerResponse>();
  readonly #sockets = new Set<net.Socket>();
  #line: string | undefined;
  #heartbeat: NodeJS.Timeout | undefined;

  constructor(token: string, readonly log: Logger, onTaskFailed?: (task: string) => void) {
    this.#server = http.createServer((req, res) => {
      if (!bearerMatches(req.headers.authorization, token)) {
        res.writeHead(401, { 'content-type': 'text/plain' }).end('unauthorized\n');
        log.warn({ remote: req.socket.remoteAddress }, 'peer request without the right token');
        return;
      }
      if (req.method === 'POST' && req.url === TASK_FAILED_PATH) return void readTask(req, res, onTaskFailed);
      if (req.method !== 'GET' || req.url !== SNAPSHOTS_PATH) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
      if (this.#line) res.write(this.#line);
      this.#streams.add(res);
      res.once('close', () => this.#streams.delete(res));
    });
    this.#server.on('connection', (s: net.Socket) => {
      this.#sockets.add(s);
      s.once('close', () => this.#sockets.delete(s));
    });
  }

  async listen(host: string, port: number): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => resolve());
    });
    this.#heartbeat = setInterval(() => { for (const r of this.#streams) r.write('\n'); }, HEARTBEAT_MS);
    this.#heartbeat.unref();
    return (this.#server.address() as net.AddressInfo).port;
  }

  get followers(): number {
    return this.#streams.size;
  }

  publish(snapshot: SwarmSnapshot): void {
    const line = JSON.stringify(trimSnapshot(snapshot)) + '\n';
    if (line === this.#line) return;
    this.#line = line;
    for (const r of this.#streams) r.write(line);
  }

  async close(): Promise<void> {
    clearInterval(this.#heartbeat);
    const closed = new Promise((r) => this.#server.close(r));
    for (const s of this.#sockets) s.destroy();
    await closed;
  }
}

export interface PeerFollowerOptions {
  /** `tasks.<service>` DNS name, or a fixed list of host:port. */
  peers: string | string[];
  port: number;
  token: string;
  log: Logger;
  onSnapshot: (snapshot: SwarmSnapshot) => void;
  onError: (err: unknown) => void;
  /** Wait between rounds over all peers when none answers, once a snapshot has been received. */
  retryDelay?: number;
}

export class PeerFollower {
  readonly #o: PeerFollowerOptions;
  readonly #agent = new Agent({ bodyTimeout: HEARTBEAT_MS * 3, headersTimeout: HEARTBEAT_MS * 2, connectTimeout: 3000 });
  #stopped = false;
  #abort = new AbortController();
  #hadSnapshot = false;
  /** Bounded lookups while starting, on the servers the process uses (dns.setServers), as dns.resolve4 does. */
  readonly #startDns = new dns.Resolver({ timeout: START_DNS_TIMEOUT_MS, tries: 1 });
  /** The peer currently followed, for /api/routes and logs. */
  current: string | undefined;

  constructor(options: PeerFollowerOptions) {
    this.#o = options;
    this.#startDns.setServers(dns.getServers());
  }

  start(): void {
    void this.#loop();
  }

  async #candidates(starting: boolean): Promise<string[]> {
    const p = this.#o.peers;
    if (Array.isArray(p)) return p;
    const resolver = starting ? this.#startDns : dns;
    // A name with no IPv4 address may have IPv6 ones; a name not found or timed out has neither.
    const ips = await resolver.resolve4(p).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENODATA') return resolver.resolve6(p);
      throw err;
    });
    return ips.sort().map((ip) => `${ip.includes(':') ? `[${ip}]` : ip}:${this.#o.port}`);
  }

  async #loop(): Promise<void> {
    const startedAt = Date.now();
    const starting = () => !this.#hadSnapshot && Date.now() - startedAt < START_WINDOW_MS;
    while (!this.#stopped) {
      let peers: string[] = [];
      try {
        peers = await this.#candidates(starting());
        if (peers.length === 0) throw new Error(`no peer found for ${String(this.#o.peers)}`);
      } catch (err) {
        this.#o.onError(err);
      }
      for (const peer of peers) {
        if (this.#stopped) return;
        try {
          await this.#follow(peer);
        } catch (err) {
          if (this.#stopped) return;
          this.#o.onError(new Error(`peer ${peer}: ${(err as Error).message}`));
        }
      }
      this.current = undefined;
      await new Promise((r) => setTimeout(r, starting() ? START_RETRY_MS : this.#o.retryDelay ?? 1000).unref());
    }
  }

  /** Follows one peer until its stream ends or fails. */
  async #follow(peer: string): Promise<void> {
    const res = await request(`http://${peer}${SNAPSHOTS_PATH}`, {
      dispatcher: this.#agent,
      headers: { authorization: `Bearer ${this.#o.token}` },
      signal: this.#abort.signal,
    });
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw new Error(`answered ${res.statusCode}`);
    }
    this.current = peer;
    this.#o.log.info({ peer }, 'following peer');
    let buffered = '';
    for await (const chunk of res.body) {
      buffered += chunk.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (!line.trim()) continue;
        this.#o.onSnapshot(JSON.parse(line) as SwarmSnapshot);
        this.#hadSnapshot = true;
      }
    }
    throw new Error('stream ended');
  }

  /** Tells the followed manager that a task's container failed on this node. */
  async reportTaskFailed(task: string): Promise<void> {
    if (!this.current) return;
    const res = await request(`http://${this.current}${TASK_FAILED_PATH}`, {
      dispatcher: this.#agent, method: 'POST', body: JSON.stringify({ task }),
      headers: { authorization: `Bearer ${this.#o.token}`, 'content-type': 'application/json' },
    });
    await res.body.dump();
  }

  stop(): void {
    this.#stopped = true;
    this.#abort.abort();
    void this.#agent.close();
  }
}
