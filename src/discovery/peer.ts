// Peers: only a manager's engine lists services and tasks, so a meshd on a
// manager serves its swarm snapshots to the others, and a meshd on a worker
// follows one manager instance (failing over to the next) and keeps its last
// good table while none answers.
//
// Wire format: GET /v1/snapshots with `Authorization: Bearer <token>` answers an
// NDJSON stream: the current snapshot at once, then each changed one, and an
// empty line every few seconds so a follower can tell a dead peer from a quiet one.
//
// A follower that sends `x-meshd-peer-features: acme` also gets typed lines,
// each an object with a `type` (a snapshot line has none, so either side of an
// upgrade reads the other): `hello` (this stream's id), `challenges` (the whole
// HTTP-01 token set with a sequence number, which the follower acknowledges by
// POST /v1/acme-ack once it answers those tokens) and `certificate` (a chain in
// clear, its private key sealed under a key derived from the token: seal.ts).
//
// A follower that sends `deltas` among its features gets, instead of snapshot
// lines, `{"type":"full","version":v,"snapshot":{...}}` at once and then one
// `delta` line per change: `{"type":"delta","version":v,"base":v-1}` with only
// what changed since `base`: `services` and `tasks` (objects added or changed,
// whole), `removedServices` and `removedTasks` (IDs), and `nodes` and
// `networks` (whole lists) when they changed. A follower whose version is not
// `base`, or that cannot apply a delta, reconnects for a full snapshot. A
// manager that does not know the feature sends snapshot lines, which such a
// follower still reads.
import { randomUUID } from 'node:crypto';
import dns from 'node:dns/promises';
import http from 'node:http';
import type net from 'node:net';
import { Agent, request } from 'undici';
import type { Logger } from '../core/log.js';
import { seal, sealingKey, unseal, type Sealed } from '../core/seal.js';
import { bearerMatches } from '../core/token.js';
import type { ChallengeSnapshot } from '../tls/challenges.js';
import type { SwarmChange, SwarmService, SwarmSnapshot, SwarmTask } from './snapshot.js';

export const SNAPSHOTS_PATH = '/v1/snapshots';
/** A worker tells the manager a task's container died, so the manager re-reads tasks at once. */
export const TASK_FAILED_PATH = '/v1/task-failed';
/** A follower answers a token set: `{"stream": id, "seq": n}`. */
export const ACME_ACK_PATH = '/v1/acme-ack';
/** Followers that send it read typed lines; others get snapshot lines only, as before. */
export const FEATURES_HEADER = 'x-meshd-peer-features';
/** The feature a follower announces to get a full snapshot, then deltas. */
export const DELTAS_FEATURE = 'deltas';
/** How long `propagate` waits for followers to answer a token set before the CA is asked anyway. */
export const ACK_TIMEOUT_MS = 5_000;
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

/** Only the tasks compile() can route to (running, or running and draining) go out; history stays home. */
function routable(task: SwarmTask): boolean {
  return task.Status.State === 'running';
}

/** An object as last sent, and its JSON. */
interface Sent<T> {
  value: T;
  json: string;
}

/**
 * Applies changed objects and removed IDs to what was sent (an object `wanted`
 * turns down counts as removed); returns the JSON of those that differ from
 * what was sent, and the IDs gone.
 */
function resend<T extends { ID: string }>(sent: Map<string, Sent<T>>, changed: T[], removed: string[], wanted: (v: T) => boolean): { changed: string[]; removed: string[] } {
  const gone: string[] = [];
  for (const id of removed) if (sent.delete(id)) gone.push(id);
  const json: string[] = [];
  for (const value of changed) {
    if (!wanted(value)) {
      if (sent.delete(value.ID)) gone.push(value.ID);
      continue;
    }
    const j = JSON.stringify(value);
    if (sent.get(value.ID)?.json !== j) json.push(j);
    sent.set(value.ID, { value, json: j });
  }
  return { changed: json, removed: gone };
}

/** The objects of `list` that are not the very ones sent, and the IDs sent that `list` has no more. */
function unsent<T extends { ID: string }>(list: T[], sent: Map<string, Sent<T>>): { changed: T[]; removed: string[] } {
  const ids = new Set<string>();
  const changed: T[] = [];
  for (const value of list) {
    ids.add(value.ID);
    if (sent.get(value.ID)?.value !== value) changed.push(value);
  }
  return { changed, removed: [...sent.keys()].filter((id) => !ids.has(id)) };
}

const jsonList = (items: Iterable<{ json: string }>): string => `[${Array.from(items, (i) => i.json).join(',')}]`;

/** The swarm as last published, object by object (in the order a follower's mirror has them), at `version`. */
interface Published {
  version: number;
  services: Map<string, Sent<SwarmService>>;
  tasks: Map<string, Sent<SwarmTask>>;
  nodes: string;
  networks: string;
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

/** A small JSON body, or undefined when it is not one. */
function readJson(req: http.IncomingMessage): Promise<unknown> {
  return new Promise((resolve) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => { if (body.length < 4096) body += c; });
    req.on('end', () => {
      try {
        resolve(JSON.parse(body));
      } catch {
        resolve(undefined);
      }
    });
  });
}

interface Stream {
  id: string;
  /** Reads typed lines, and acknowledges token sets. */
  acme: boolean;
  /** Reads a full snapshot, then deltas. */
  deltas: boolean;
  /** Highest token set sequence this follower answers. */
  acked: number;
}

export class PeerServer {
  readonly #server: http.Server;
  readonly #streams = new Map<http.ServerResponse, Stream>();
  readonly #sockets = new Set<net.Socket>();
  readonly #key: Buffer;
  #published: Published | undefined;
  /** The snapshot as one line, untyped and typed: made when first wanted after a change. */
  #line: string | undefined;
  #full: string | undefined;
  #challenges: string | undefined;
  #seq = 0;
  /** The latest certificate line for each set of names, for followers that connect later. */
  readonly #certificates = new Map<string, string>();
  /** Called on each acknowledgement and closed stream, by those waiting in acknowledged(). */
  readonly #ackWaiters = new Set<() => void>();
  #heartbeat: NodeJS.Timeout | undefined;

  constructor(token: string, readonly log: Logger, onTaskFailed?: (task: string) => void) {
    this.#key = sealingKey(token);
    this.#server = http.createServer((req, res) => {
      if (!bearerMatches(req.headers.authorization, token)) {
        res.writeHead(401, { 'content-type': 'text/plain' }).end('unauthorized\n');
        log.warn({ remote: req.socket.remoteAddress }, 'peer request without the right token');
        return;
      }
      if (req.method === 'POST' && req.url === TASK_FAILED_PATH) return void readTask(req, res, onTaskFailed);
      if (req.method === 'POST' && req.url === ACME_ACK_PATH) return void this.#readAck(req, res);
      if (req.method !== 'GET' || req.url !== SNAPSHOTS_PATH) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
      const features = String(req.headers[FEATURES_HEADER] ?? '').split(',').map((f) => f.trim());
      const stream: Stream = { id: randomUUID(), acme: features.includes('acme'), deltas: features.includes(DELTAS_FEATURE), acked: 0 };
      if (stream.acme || stream.deltas) res.write(JSON.stringify({ type: 'hello', stream: stream.id }) + '\n');
      if (this.#published) res.write(this.#snapshotLine(stream));
      if (stream.acme) {
        if (this.#challenges) res.write(this.#challenges);
        for (const line of this.#certificates.values()) res.write(line);
      }
      this.#streams.set(res, stream);
      res.once('close', () => {
        this.#streams.delete(res);
        for (const w of this.#ackWaiters) w();
      });
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
    this.#heartbeat = setInterval(() => { for (const r of this.#streams.keys()) r.write('\n'); }, HEARTBEAT_MS);
    this.#heartbeat.unref();
    return (this.#server.address() as net.AddressInfo).port;
  }

  get followers(): number {
    return this.#streams.size;
  }

  /**
   * Sends what changed: a delta to followers that read them, the whole
   * snapshot to the others. `change` says what differs from the snapshot
   * published before, when the caller knows (discovery does), and the work
   * follows it; without it, the snapshot's objects are compared with those
   * sent, by identity, then by JSON.
   */
  publish(snapshot: SwarmSnapshot, change?: SwarmChange): void {
    const first = !this.#published;
    const p = this.#published ??= { version: 0, services: new Map(), tasks: new Map(), nodes: '', networks: '' };
    let c = change;
    if (!c || first) {
      const services = unsent(snapshot.services, p.services);
      const tasks = unsent(snapshot.tasks.filter(routable), p.tasks);
      c = { services: services.changed, removedServices: services.removed, tasks: tasks.changed, removedTasks: tasks.removed, nodes: snapshot.nodes, networks: snapshot.networks };
    }
    const services = resend(p.services, c.services, c.removedServices, () => true);
    const tasks = resend(p.tasks, c.tasks, c.removedTasks, routable);
    const nodes = c.nodes ? JSON.stringify(c.nodes) : p.nodes;
    const networks = c.networks ? JSON.stringify(c.networks) : p.networks;
    const same = !first && !services.changed.length && !services.removed.length && !tasks.changed.length && !tasks.removed.length
      && nodes === p.nodes && networks === p.networks;
    if (same) return;
    const base = p.version;
    const parts = [`"type":"delta","version":${base + 1},"base":${base}`];
    if (services.changed.length) parts.push(`"services":[${services.changed.join(',')}]`);
    if (services.removed.length) parts.push(`"removedServices":${JSON.stringify(services.removed)}`);
    if (tasks.changed.length) parts.push(`"tasks":[${tasks.changed.join(',')}]`);
    if (tasks.removed.length) parts.push(`"removedTasks":${JSON.stringify(tasks.removed)}`);
    if (nodes !== p.nodes) parts.push(`"nodes":${nodes}`);
    if (networks !== p.networks) parts.push(`"networks":${networks}`);
    Object.assign(p, { version: base + 1, nodes, networks });
    this.#line = this.#full = undefined;
    const delta = first ? undefined : `{${parts.join(',')}}\n`;
    for (const [r, s] of this.#streams) r.write(s.deltas && delta ? delta : this.#snapshotLine(s));
  }

  /** The whole published snapshot, typed for followers that read deltas. */
  #snapshotLine(stream: Stream): string {
    const p = this.#published!;
    const body = () => `{"services":${jsonList(p.services.values())},"tasks":${jsonList(p.tasks.values())},"nodes":${p.nodes},"networks":${p.networks}}`;
    if (stream.deltas) return this.#full ??= `{"type":"full","version":${p.version},"snapshot":${body()}}\n`;
    return this.#line ??= `${body()}\n`;
  }

  /** Sends the whole token set to every ACME follower; returns its sequence number. */
  publishChallenges(tokens: ChallengeSnapshot): number {
    this.#seq++;
    this.#challenges = JSON.stringify({ type: 'challenges', seq: this.#seq, tokens }) + '\n';
    this.#writeAcme(this.#challenges);
    return this.#seq;
  }

  /** Sends a certificate to every ACME follower, and to those that connect later; the key travels sealed. */
  publishCertificate(names: string[], certPem: string, keyPem: string): void {
    const key = names.join(',');
    const line = JSON.stringify({ type: 'certificate', names, cert: certPem, key: seal(this.#key, keyPem, key) }) + '\n';
    this.#certificates.set(key, line);
    this.#writeAcme(line);
  }

  /**
   * Resolves true once every connected ACME follower has acknowledged token set
   * `seq` (the latest by default), false after `timeout` ms: followers that
   * cannot answer must not hold an order forever.
   */
  acknowledged(seq = this.#seq, timeout = ACK_TIMEOUT_MS): Promise<boolean> {
    const done = () => [...this.#streams.values()].every((s) => !s.acme || s.acked >= seq);
    if (done()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const finish = (ok: boolean) => {
        clearTimeout(timer);
        this.#ackWaiters.delete(check);
        resolve(ok);
      };
      const check = () => { if (done()) finish(true); };
      const timer = setTimeout(() => finish(false), timeout);
      timer.unref();
      this.#ackWaiters.add(check);
    });
  }

  #writeAcme(line: string): void {
    for (const [r, s] of this.#streams) if (s.acme) r.write(line);
  }

  async #readAck(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const body = await readJson(req) as { stream?: unknown; seq?: unknown } | undefined;
    const stream = [...this.#streams.values()].find((s) => s.id === body?.stream);
    if (!stream || !Number.isInteger(body?.seq)) return void res.writeHead(400).end('body must be {"stream": "<id from hello>", "seq": <n>} for an open stream\n');
    stream.acked = Math.max(stream.acked, body!.seq as number);
    res.writeHead(204).end();
    for (const w of this.#ackWaiters) w();
  }

  async close(): Promise<void> {
    clearInterval(this.#heartbeat);
    const closed = new Promise((r) => this.#server.close(r));
    for (const s of this.#sockets) s.destroy();
    await closed;
  }
}

/** What a follower does with typed lines; without it, it reads snapshots only. */
export interface AcmeLines {
  /** The whole token set; resolve once this instance (and whoever follows it) answers it: the manager is then told. */
  onChallenges: (tokens: ChallengeSnapshot) => void | Promise<void>;
  onCertificate: (names: string[], certPem: string, keyPem: string) => void;
  /** A typed line that could not be used: logged and counted by the caller; the stream goes on. */
  onBadLine: (reason: string) => void;
}

export interface PeerFollowerOptions {
  /** `tasks.<service>` DNS name, or a fixed list of host:port. */
  peers: string | string[];
  port: number;
  /**
   * Hosts tried after the DNS name's answers (at `port`): the managers' node
   * addresses, where the stack publishes the peer port. Swarm's DNS knows a new
   * node's `tasks.<service>` only seconds after its task starts; the node's own
   * engine knows the managers at once.
   */
  fallbackHosts?: () => Promise<string[]>;
  token: string;
  log: Logger;
  /** A whole snapshot: the first of a stream, or each one from a manager without deltas. */
  onSnapshot: (snapshot: SwarmSnapshot) => void;
  /**
   * What a delta changed since the snapshot or change handed on before; without
   * it, the snapshot is rebuilt whole and handed to onSnapshot.
   */
  onChange?: (change: SwarmChange) => void;
  onError: (err: unknown) => void;
  /** Wait between rounds over all peers when none answers, once a snapshot has been received. */
  retryDelay?: number;
  acme?: AcmeLines;
}

/** The manager's snapshot as rebuilt from a full line and the deltas since. */
interface Mirror {
  version: number;
  services: Map<string, SwarmService>;
  tasks: Map<string, SwarmTask>;
  nodes: SwarmSnapshot['nodes'];
  networks: SwarmSnapshot['networks'];
}

/** A delta this follower cannot apply: it asks for a full snapshot. */
class OutOfStep extends Error {}

const isObjectList = (v: unknown): v is { ID: unknown }[] => Array.isArray(v) && v.every((o) => typeof o === 'object' && o !== null && !Array.isArray(o));
const isIdList = (v: unknown): v is string[] => Array.isArray(v) && v.every((id) => typeof id === 'string');
/** Objects keyed by a string ID, as a delta's are applied by it. */
const hasIds = (v: { ID: unknown }[]): boolean => v.every((o) => typeof o.ID === 'string');
/** Services with a spec and a name: what compiling one reads first. */
const isServiceList = (v: unknown): boolean => isObjectList(v) && hasIds(v)
  && v.every((o) => { const spec = (o as Partial<SwarmService>).Spec; return typeof spec === 'object' && spec !== null && typeof spec.Name === 'string'; });
const isTaskList = (v: unknown): boolean => isObjectList(v) && hasIds(v)
  && v.every((t) => typeof (t as Partial<SwarmTask>).ServiceID === 'string' && typeof (t as Partial<SwarmTask>).Status === 'object' && (t as SwarmTask).Status !== null);

function mirrorOf(version: unknown, snapshot: unknown): Mirror {
  const s = snapshot as Partial<SwarmSnapshot> | null;
  if (!Number.isInteger(version) || typeof s !== 'object' || s === null || !isObjectList(s.services) || !isObjectList(s.tasks)
    || !isObjectList(s.nodes) || !isObjectList(s.networks)) throw new Error('malformed full snapshot');
  return {
    version: version as number,
    services: new Map(s.services.map((o) => [o.ID, o])),
    tasks: new Map(s.tasks.map((o) => [o.ID, o])),
    nodes: s.nodes,
    networks: s.networks,
  };
}

/** Applies a delta line to `m` in place and returns its change; throws OutOfStep, leaving `m` as it was, when it does not follow or is malformed. */
function applyDelta(m: Mirror, d: Record<string, unknown>): SwarmChange {
  if (d.base !== m.version || !Number.isInteger(d.version)) throw new OutOfStep(`delta from version ${String(d.base)}, this follower has ${m.version}`);
  const { services = [], removedServices = [], tasks = [], removedTasks = [], nodes, networks } = d;
  if (!isServiceList(services) || !isTaskList(tasks) || !isIdList(removedServices) || !isIdList(removedTasks)
    || (nodes !== undefined && !isObjectList(nodes)) || (networks !== undefined && !isObjectList(networks))) throw new OutOfStep('malformed delta');
  const change: SwarmChange = {
    services: services as unknown as SwarmService[], removedServices,
    tasks: tasks as unknown as SwarmTask[], removedTasks,
    nodes: nodes as unknown as SwarmSnapshot['nodes'] | undefined,
    networks: networks as unknown as SwarmSnapshot['networks'] | undefined,
  };
  for (const id of removedServices) m.services.delete(id);
  for (const id of removedTasks) m.tasks.delete(id);
  for (const o of change.services) m.services.set(o.ID, o);
  for (const o of change.tasks) m.tasks.set(o.ID, o);
  m.nodes = change.nodes ?? m.nodes;
  m.networks = change.networks ?? m.networks;
  m.version = d.version as number;
  return change;
}

/** Unchanged services and tasks keep their objects from one snapshot to the next. */
function snapshotOf(m: Mirror): SwarmSnapshot {
  return { services: [...m.services.values()], tasks: [...m.tasks.values()], nodes: m.nodes, networks: m.networks };
}

export class PeerFollower {
  readonly #o: PeerFollowerOptions;
  readonly #agent = new Agent({ bodyTimeout: HEARTBEAT_MS * 3, headersTimeout: HEARTBEAT_MS * 2, connectTimeout: 3000 });
  #stopped = false;
  #abort = new AbortController();
  #hadSnapshot = false;
  /** Bounded lookups while starting, on the servers the process uses (dns.setServers), as dns.resolve4 does. */
  readonly #startDns = new dns.Resolver({ timeout: START_DNS_TIMEOUT_MS, tries: 1 });
  readonly #key: Buffer;
  /** The peer currently followed, for /api/routes and logs. */
  current: string | undefined;

  constructor(options: PeerFollowerOptions) {
    this.#o = options;
    this.#key = sealingKey(options.token);
    this.#startDns.setServers(dns.getServers());
  }

  start(): void {
    void this.#loop();
  }

  /** Where to look, in order; a DNS failure is reported and the fallback hosts are still tried. */
  async #candidates(starting: boolean): Promise<string[]> {
    const p = this.#o.peers;
    if (Array.isArray(p)) return p;
    const resolver = starting ? this.#startDns : dns;
    // A name with no IPv4 address may have IPv6 ones; a name not found or timed out has neither.
    const found = await resolver.resolve4(p).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENODATA') return resolver.resolve6(p);
      throw err;
    }).catch((err: unknown) => {
      this.#o.onError(err);
      return [];
    });
    const fallback = await this.#o.fallbackHosts?.().catch((err: unknown) => {
      this.#o.onError(err);
      return [];
    }) ?? [];
    const withPort = (host: string) => `${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${this.#o.port}`;
    return [...found.sort(), ...fallback].map(withPort);
  }

  async #loop(): Promise<void> {
    const startedAt = Date.now();
    const starting = () => !this.#hadSnapshot && Date.now() - startedAt < START_WINDOW_MS;
    while (!this.#stopped) {
      const peers = await this.#candidates(starting());
      if (peers.length === 0) this.#o.onError(new Error(`no peer found for ${String(this.#o.peers)}`));
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

  /** Follows one peer until its stream ends or fails; a delta out of step is followed by a new stream, which starts with a full snapshot. */
  async #follow(peer: string): Promise<void> {
    for (;;) {
      try {
        return await this.#stream(peer);
      } catch (err) {
        if (!(err instanceof OutOfStep) || this.#stopped) throw err;
        this.#o.log.warn({ peer, err: err.message }, 'peer snapshot delta cannot be applied; asking for a full snapshot');
      }
    }
  }

  async #stream(peer: string): Promise<void> {
    const features = this.#o.acme ? `acme,${DELTAS_FEATURE}` : DELTAS_FEATURE;
    const res = await request(`http://${peer}${SNAPSHOTS_PATH}`, {
      dispatcher: this.#agent,
      headers: { authorization: `Bearer ${this.#o.token}`, [FEATURES_HEADER]: features },
      signal: this.#abort.signal,
    });
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw new Error(`answered ${res.statusCode}`);
    }
    this.current = peer;
    this.#o.log.info({ peer }, 'following peer');
    const stream = { id: '' };
    let mirror: Mirror | undefined;
    const onLine = (line: string) => {
      if (!line.trim()) return;
      const msg = JSON.parse(line) as Record<string, unknown>;
      if (msg.type === undefined || msg.type === 'full' || msg.type === 'delta') {
        // A manager without deltas sends untyped snapshot lines.
        if (msg.type === undefined) mirror = undefined;
        else if (msg.type === 'full') mirror = mirrorOf(msg.version, msg.snapshot);
        else if (!mirror) throw new Error('delta before a full snapshot');
        else {
          const change = applyDelta(mirror, msg);
          if (this.#o.onChange) return void this.#o.onChange(change);
        }
        this.#o.onSnapshot(mirror ? snapshotOf(mirror) : msg as unknown as SwarmSnapshot);
        this.#hadSnapshot = true;
      } else if (this.#o.acme) {
        try {
          this.#typed(peer, stream, msg, this.#o.acme);
        } catch (err) {
          this.#o.acme.onBadLine(`peer ${peer}: ${(err as Error).message}`);
        }
      }
    };
    // Bytes of the line in progress. Each chunk is searched for its own newlines
    // only (a full snapshot of tens of MB arrives in thousands of chunks), and a
    // line is decoded once whole, so no UTF-8 character is cut at a chunk's edge.
    const parts: Buffer[] = [];
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      let from = 0;
      for (let nl = chunk.indexOf(10); nl >= 0; nl = chunk.indexOf(10, from)) {
        parts.push(chunk.subarray(from, nl));
        const line = (parts.length === 1 ? parts[0]! : Buffer.concat(parts)).toString();
        parts.length = 0;
        from = nl + 1;
        onLine(line);
      }
      if (from < chunk.length) parts.push(chunk.subarray(from));
    }
    throw new Error('stream ended');
  }

  /** A typed line; throws a message that never quotes a key. Unknown types are for newer followers. */
  #typed(peer: string, stream: { id: string }, msg: Record<string, unknown>, acme: AcmeLines): void {
    switch (msg.type) {
      case 'hello':
        if (typeof msg.stream !== 'string') throw new Error('hello without a stream id');
        stream.id = msg.stream;
        return;
      case 'challenges': {
        const { seq, tokens } = msg;
        if (!Number.isInteger(seq) || typeof tokens !== 'object' || tokens === null || Array.isArray(tokens)) throw new Error('challenges line without seq and tokens');
        // Not awaited: a follower relaying to its own followers waits for them, and the stream goes on meanwhile.
        Promise.resolve(acme.onChallenges(tokens as ChallengeSnapshot))
          .then(() => this.#ack(peer, stream.id, seq as number))
          .catch((err: unknown) => this.#o.log.warn({ peer, err: (err as Error).message }, 'cannot acknowledge ACME challenges'));
        return;
      }
      case 'certificate': {
        const { names, cert, key } = msg as { names?: unknown; cert?: unknown; key?: Partial<Sealed> };
        if (!Array.isArray(names) || !names.length || !names.every((n) => typeof n === 'string') || typeof cert !== 'string'
          || typeof key?.nonce !== 'string' || typeof key.data !== 'string' || typeof key.tag !== 'string') throw new Error('malformed certificate line');
        acme.onCertificate(names as string[], cert, unseal(this.#key, key as Sealed, names.join(',')));
        return;
      }
    }
  }

  async #ack(peer: string, stream: string, seq: number): Promise<void> {
    const res = await request(`http://${peer}${ACME_ACK_PATH}`, {
      dispatcher: this.#agent, method: 'POST', body: JSON.stringify({ stream, seq }),
      headers: { authorization: `Bearer ${this.#o.token}`, 'content-type': 'application/json' },
    });
    await res.body.dump();
    if (res.statusCode !== 204) throw new Error(`acknowledgement answered ${res.statusCode}`);
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
    // A second close of the agent would reject unhandled.
    if (this.#stopped) return;
    this.#stopped = true;
    this.#abort.abort();
    void this.#agent.close();
  }
}
