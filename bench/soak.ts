// `npm run bench:soak -- --minutes 10`: meshd (file provider, one L7 and one L4
// route) in front of backends it must survive, under steady bounded load, for
// as long as asked. At random moments a backend is killed (SIGKILL) and
// restarted, one is added to or removed from the routes file (write-then-rename),
// or one answers slowly for a while. Every request carries an ID; backends write
// each ID they receive to a file (it survives SIGKILL), so a failed request is
// classed unavoidable only when it was on a backend at the moment it was killed,
// or (L4) its connection was relayed to a backend that was killed.
// Reports requests, failures by reason, meshd's RSS, heap and descriptors over
// time, to bench/results/soak-latest.json and as a table. Loopback only.
//   --minutes M (10, from 1 to 240)  --rate R (300 requests/s in all, from 10 to 2000)
import { fork, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { HERE, freePort, killAll, killTree, ready, round, sleep, track, waitPort } from './harness.js';

const SLOTS = 6;
const FIRST_LISTED = 4;
const SLOW_MS = 1500;
/** meshd's --drain-timeout here (its default): a removed backend's connections are cut this long after its removal. */
const DRAIN_MS = 30_000;
const REQUEST_TIMEOUT_MS = 10_000;
/** How long after a SIGKILL a request may still have been relayed to the dying backend. */
const KILL_SETTLE_MS = 100;
/** meshd closes an upstream keep-alive connection idle this long (src/proxy/http.ts); the soak waits past it at the end. */
const UPSTREAM_IDLE_MS = 30_000;
const SAMPLE_EVERY_MS = 5000;
/** Requests in flight per kind above which a due request is skipped (and counted), so load stays bounded. */
const MAX_IN_FLIGHT = 200;
const L4_KEEPALIVE_CONNECTIONS = 16;
const KINDS = { 'l7 keep-alive': 0.4, 'l7 new connection': 0.2, 'l4 keep-alive': 0.25, 'l4 new connection': 0.15 } as const;
type Kind = keyof typeof KINDS;

function options(): { minutes: number; rate: number } {
  const argv = process.argv.slice(2);
  const num = (name: string, def: number, min: number, max: number) => {
    const i = argv.indexOf(`--${name}`);
    if (i < 0) return def;
    const v = Number(argv[i + 1]);
    if (!Number.isFinite(v) || v < min || v > max) throw new Error(`--${name} needs a number from ${min} to ${max}`);
    return v;
  };
  return { minutes: num('minutes', 10, 1, 240), rate: num('rate', 300, 10, 2000) };
}

const log = (line: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);
const rand = (lo: number, hi: number) => lo + Math.random() * (hi - lo);

// ---- backends -------------------------------------------------------------

interface Slot {
  n: number;
  http: number;
  tcp: number;
  listed: boolean;
  child: ChildProcess | undefined;
  /** `b<slot>.<generation>`: what the backend answers as, and names its receipts file. */
  incarnation: string;
  generation: number;
  slow: boolean;
}

/** Incarnation → when it was SIGKILLed. */
const kills = new Map<string, number>();
/** Incarnation → when it was removed from, and added back to, the routes file. */
const removals = new Map<string, number[]>();
const additions = new Map<string, number[]>();
const note = (m: Map<string, number[]>, incarnation: string) => m.set(incarnation, [...(m.get(incarnation) ?? []), Date.now()]);

async function startBackend(slot: Slot, dir: string): Promise<void> {
  slot.generation++;
  slot.incarnation = `b${slot.n}.${slot.generation}`;
  const child = track(fork(path.join(HERE, 'soak-backend.js'), [slot.incarnation, String(slot.http), String(slot.tcp), path.join(dir, `recv-${slot.incarnation}.log`)],
    { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }));
  await ready(child);
  slot.child = child;
  slot.slow = false;
}

function killBackend(slot: Slot): void {
  if (!slot.child?.pid) return;
  kills.set(slot.incarnation, Date.now());
  process.kill(slot.child.pid, 'SIGKILL');
  slot.child = undefined;
}

function writeRoutes(file: string, l7: number, l4: number, slots: Slot[]): void {
  const listed = slots.filter((s) => s.listed);
  const text = `routes:
  - name: soak-http
    publish: ${l7}
    mode: http
    health: { path: /health, interval: 1s, timeout: 500ms }
    backends: [${listed.map((s) => `"127.0.0.1:${s.http}"`).join(', ')}]
  - name: soak-tcp
    publish: ${l4}
    mode: tcp
    health: { interval: 1s, timeout: 500ms }
    backends: [${listed.map((s) => `"127.0.0.1:${s.tcp}"`).join(', ')}]
`;
  fs.writeFileSync(`${file}.tmp`, text);
  fs.renameSync(`${file}.tmp`, file);
}

// ---- load -----------------------------------------------------------------

interface Failure {
  id: string;
  kind: Kind;
  sentAt: number;
  doneAt: number;
  reason: string;
  /** L4 keep-alive: the backend this connection had been relayed to, from its earlier answers. */
  connBackend?: string | undefined;
}

class Load {
  readonly sent = new Map<Kind, number>();
  readonly ok = new Map<Kind, number>();
  readonly skipped = new Map<Kind, number>();
  readonly failures: Failure[] = [];
  readonly answeredBy = new Map<string, number>();
  readonly #inFlight = new Map<Kind, number>();
  // Enough sockets that a slow backend's requests do not queue the others behind them in the client.
  readonly #agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  readonly #pool = new Set<L4Conn>();
  #seq = 0;

  constructor(readonly l7: number, readonly l4: number) {
    for (const k of Object.keys(KINDS) as Kind[]) for (const m of [this.sent, this.ok, this.skipped, this.#inFlight]) m.set(k, 0);
  }

  get inFlight(): number {
    return [...this.#inFlight.values()].reduce((a, b) => a + b, 0);
  }

  /** One request of `kind`, unless too many of that kind are in flight. */
  fire(kind: Kind): void {
    const noConnection = kind === 'l4 keep-alive' && this.#pool.size >= L4_KEEPALIVE_CONNECTIONS && ![...this.#pool].some((c) => !c.pending && c.open);
    if (this.#inFlight.get(kind)! >= MAX_IN_FLIGHT || noConnection) return void this.skipped.set(kind, this.skipped.get(kind)! + 1);
    const id = `${kind.replace(/ /g, '-')}-${++this.#seq}`;
    const sentAt = Date.now();
    this.sent.set(kind, this.sent.get(kind)! + 1);
    this.#inFlight.set(kind, this.#inFlight.get(kind)! + 1);
    let done = false;
    const finish = (outcome: { backend: string } | { reason: string; connBackend?: string | undefined }) => {
      if (done) return;
      done = true;
      this.#inFlight.set(kind, this.#inFlight.get(kind)! - 1);
      if ('backend' in outcome) {
        this.ok.set(kind, this.ok.get(kind)! + 1);
        this.answeredBy.set(outcome.backend, (this.answeredBy.get(outcome.backend) ?? 0) + 1);
      } else this.failures.push({ id, kind, sentAt, doneAt: Date.now(), ...outcome });
    };
    if (kind === 'l7 keep-alive' || kind === 'l7 new connection') this.#l7(id, kind === 'l7 keep-alive' ? this.#agent : false, finish);
    else if (kind === 'l4 new connection') this.#l4New(id, finish);
    else this.#l4KeepAlive(id, finish);
  }

  #l7(id: string, agent: http.Agent | false, finish: (o: { backend: string } | { reason: string }) => void): void {
    const headers: http.OutgoingHttpHeaders = { 'x-req': id };
    if (!agent) headers.connection = 'close';
    const req = http.get({ host: '127.0.0.1', port: this.l7, path: '/', agent, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => {
        if (res.statusCode !== 200) finish({ reason: `status ${res.statusCode} ${String(res.headers['x-meshd-error'] ?? '')}`.trim() });
        else if (body !== id) finish({ reason: 'wrong body' });
        else finish({ backend: String(res.headers['x-backend']) });
      });
      res.on('error', (e: NodeJS.ErrnoException) => finish({ reason: `response ${e.code ?? e.message}` }));
    });
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', (e: NodeJS.ErrnoException) => finish({ reason: e.code ?? e.message }));
  }

  #l4New(id: string, finish: (o: { backend: string } | { reason: string }) => void): void {
    const socket = net.connect(this.l4, '127.0.0.1', () => socket.write(`${id}\n`));
    let buffered = '';
    socket.setEncoding('utf8');
    socket.setTimeout(REQUEST_TIMEOUT_MS, () => socket.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    socket.on('data', (c: string) => {
      buffered += c;
      const nl = buffered.indexOf('\n');
      if (nl < 0) return;
      const [backend, echoed] = buffered.slice(0, nl).split(' ');
      finish(echoed === id ? { backend: backend! } : { reason: 'wrong answer' });
      socket.end();
    });
    socket.on('error', (e: NodeJS.ErrnoException) => finish({ reason: e.code ?? e.message }));
    socket.on('close', () => finish({ reason: 'closed before the answer' }));
  }

  #l4KeepAlive(id: string, finish: (o: { backend: string } | { reason: string; connBackend?: string | undefined }) => void): void {
    let conn = [...this.#pool].find((c) => !c.pending && c.open);
    if (!conn) {
      conn = new L4Conn(this.l4, (c) => this.#pool.delete(c));
      this.#pool.add(conn);
    }
    conn.send(id, finish);
  }

  close(): void {
    this.#agent.destroy();
    for (const c of this.#pool) c.socket.destroy();
  }
}

/** A persistent L4 connection carrying one request at a time. */
class L4Conn {
  readonly socket: net.Socket;
  open = true;
  backend: string | undefined;
  pending: { id: string; finish: (o: { backend: string } | { reason: string; connBackend?: string | undefined }) => void; timer: NodeJS.Timeout } | undefined;
  #buffered = '';

  constructor(port: number, onGone: (c: L4Conn) => void) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.setEncoding('utf8');
    this.socket.on('data', (c: string) => {
      this.#buffered += c;
      let nl: number;
      while ((nl = this.#buffered.indexOf('\n')) >= 0) {
        const [backend, echoed] = this.#buffered.slice(0, nl).split(' ');
        this.#buffered = this.#buffered.slice(nl + 1);
        const p = this.pending;
        if (!p) continue;
        this.pending = undefined;
        clearTimeout(p.timer);
        this.backend = backend;
        p.finish(echoed === p.id ? { backend: backend! } : { reason: 'wrong answer' });
      }
    });
    const gone = (reason: string) => {
      this.open = false;
      onGone(this);
      const p = this.pending;
      this.pending = undefined;
      if (p) {
        clearTimeout(p.timer);
        p.finish({ reason, connBackend: this.backend });
      }
    };
    this.socket.on('error', (e: NodeJS.ErrnoException) => gone(e.code ?? e.message));
    this.socket.on('close', () => gone('closed before the answer'));
  }

  send(id: string, finish: (o: { backend: string } | { reason: string; connBackend?: string | undefined }) => void): void {
    const timer = setTimeout(() => this.socket.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })), REQUEST_TIMEOUT_MS);
    this.pending = { id, finish, timer };
    this.socket.write(`${id}\n`);
  }
}

// ---- meshd's own figures --------------------------------------------------

interface Sample { t: number; rssMiB: number; heapMiB: number; fds: number }

function scrape(admin: number, urlPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: admin, path: urlPath, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve(body));
    });
    req.setTimeout(5000, () => req.destroy(new Error(`admin ${urlPath} timed out`)));
    req.on('error', reject);
  });
}

async function sample(admin: number, pid: number, t0: number): Promise<Sample> {
  const text = await scrape(admin, '/metrics');
  const value = (suffix: string) => Number(new RegExp(`^\\w*${suffix} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  return {
    t: round((Date.now() - t0) / 1000, 1),
    rssMiB: round(value('process_resident_memory_bytes') / 2 ** 20, 1),
    heapMiB: round(value('nodejs_heap_size_used_bytes') / 2 ** 20, 1),
    fds: fs.readdirSync(`/proc/${pid}/fd`).length,
  };
}

/** meshd's retries, answers it gave itself by reason, and open client connections, from /metrics. */
async function counters(admin: number): Promise<{ retries: number; answered: Record<string, number>; clientConnections: number }> {
  const text = await scrape(admin, '/metrics');
  return {
    retries: Number(/^meshd_proxy_retries_total (\d+)/m.exec(text)?.[1] ?? 0),
    answered: Object.fromEntries([...text.matchAll(/^meshd_proxy_answered_total\{code="([A-Z_]+)"\} (\d+)/gm)].map((m) => [m[1]!, Number(m[2])])),
    clientConnections: Number(/^meshd_client_connections (\d+)/m.exec(text)?.[1] ?? NaN),
  };
}

/** meshd's descriptors by what they are: its listeners, client connections, connections to backends, the rest. */
function descriptors(pid: number, ports: { front: number[]; admin: number; backends: number[] }): Record<string, number> {
  const sockets = new Map<string, { local: number; remote: number; listening: boolean }>();
  for (const table of ['tcp', 'tcp6']) {
    let text = '';
    try {
      text = fs.readFileSync(`/proc/${pid}/net/${table}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      sockets.set(f[9]!, { local: parseInt(f[1]!.split(':')[1]!, 16), remote: parseInt(f[2]!.split(':')[1]!, 16), listening: f[3] === '0A' });
    }
  }
  const out: Record<string, number> = { listening: 0, clients: 0, backends: 0, admin: 0, 'other sockets': 0, 'not sockets': 0 };
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    let target = '';
    try {
      target = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue;
    }
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
    const s = inode === undefined ? undefined : sockets.get(inode);
    const kind = inode === undefined ? 'not sockets'
      : !s ? 'other sockets'
        : s.listening ? 'listening'
          : ports.front.includes(s.local) ? 'clients'
            : s.local === ports.admin ? 'admin'
              : ports.backends.includes(s.remote) ? 'backends' : 'other sockets';
    out[kind]!++;
  }
  return out;
}

/** Least-squares slope of `y` per minute. */
function slopePerMinute(samples: Sample[], y: (s: Sample) => number): number {
  const n = samples.length;
  if (n < 2) return NaN;
  const mx = samples.reduce((a, s) => a + s.t, 0) / n;
  const my = samples.reduce((a, s) => a + y(s), 0) / n;
  const sxy = samples.reduce((a, s) => a + (s.t - mx) * (y(s) - my), 0);
  const sxx = samples.reduce((a, s) => a + (s.t - mx) ** 2, 0);
  return round((sxy / sxx) * 60, 3);
}

/** Which incarnation received each of the given request IDs, from the receipts files. */
function receivers(dir: string, ids: Set<string>): Map<string, string> {
  const out = new Map<string, string>();
  for (const f of fs.readdirSync(dir).filter((f) => f.startsWith('recv-'))) {
    const incarnation = f.slice(5, -4);
    for (const id of fs.readFileSync(path.join(dir, f), 'utf8').split('\n')) if (ids.has(id)) out.set(id, incarnation);
  }
  return out;
}

type Verdict = 'unavoidable' | 'unattributed' | 'avoidable';

/**
 * unavoidable: it was on a backend when that backend was killed (its receipt says
 * so), or (L4) its connection was relayed to a backend that was killed;
 * unattributed: some backend was killed while it was in flight, or just before
 * it was sent (a dying process's sockets still complete connections for a few
 * milliseconds, and meshd cannot know yet), but no backend recorded it (its
 * bytes may have sat unread in the killed one's socket);
 * avoidable: anything else.
 */
function verdict(f: Failure, receivedBy: string | undefined): Verdict {
  if (receivedBy !== undefined) {
    const k = kills.get(receivedBy);
    return k !== undefined && f.sentAt <= k && k <= f.doneAt ? 'unavoidable' : 'avoidable';
  }
  if (f.connBackend !== undefined) {
    const k = kills.get(f.connBackend);
    if (k !== undefined && k <= f.doneAt) return 'unavoidable';
  }
  return [...kills.values()].some((k) => f.sentAt - KILL_SETTLE_MS <= k && k <= f.doneAt) ? 'unattributed' : 'avoidable';
}

/** What an avoidable failure coincided with, when it coincided with something the soak did. */
function explain(f: Failure, receivedBy: string | undefined): string | undefined {
  const backend = receivedBy ?? f.connBackend;
  if (backend === undefined) return undefined;
  const removed = removals.get(backend)?.find((r) => f.doneAt - r >= DRAIN_MS && f.doneAt - r < DRAIN_MS + 2000);
  if (removed === undefined) return undefined;
  const back = additions.get(backend)?.find((a) => a > removed && a < f.doneAt);
  return `cut at the drain deadline: its backend ${backend} was removed from the routes ${f.doneAt - removed} ms before`
    + (back === undefined ? '' : `, and added back ${back - removed} ms after its removal`);
}

function sourceDir(): string {
  for (const d of [path.resolve(process.cwd(), 'bench'), path.resolve(HERE, '../../bench')]) {
    if (fs.existsSync(path.join(d, 'soak.ts'))) return d;
  }
  throw new Error('cannot find the bench/ sources: run from the project root');
}

// ---- the run --------------------------------------------------------------

async function main(): Promise<void> {
  const opt = options();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshd-soak-'));
  const [l7, l4, admin] = [await freePort(), await freePort(), await freePort()];
  const slots: Slot[] = [];
  for (let n = 0; n < SLOTS; n++) {
    slots.push({ n, http: await freePort(), tcp: await freePort(), listed: n < FIRST_LISTED, child: undefined, incarnation: '', generation: 0, slow: false });
  }
  for (const s of slots) await startBackend(s, dir);
  const routes = path.join(dir, 'routes.yml');
  writeRoutes(routes, l7, l4, slots);

  const meshdLog = fs.openSync(path.join(dir, 'meshd.log'), 'a');
  const meshd = track(spawn(process.execPath, [path.resolve(HERE, '../src/main.js'), '--provider', 'file', '--routes', routes, '--listen-host', '127.0.0.1',
    '--admin-addr', `127.0.0.1:${admin}`, '--drain-timeout', `${DRAIN_MS}ms`, '--log-level', 'warn'], { stdio: ['ignore', meshdLog, meshdLog] }));
  for (const p of [admin, l7, l4]) await waitPort(p, meshd);
  const pid = meshd.pid!;
  meshd.once('exit', (code, signal) => log(`meshd exited (${code ?? signal})`));
  await sleep(2000); // first probes pass
  log(`soak: ${opt.minutes} min at ${opt.rate} req/s; meshd pid ${pid}, L7 :${l7}, L4 :${l4}, admin :${admin}; files in ${dir}`);

  // From here on: the port checks above met no backend yet, and are not the soak's.
  const countersBefore = await counters(admin);
  const t0 = Date.now();
  const until = t0 + opt.minutes * 60_000;
  const samples: Sample[] = [await sample(admin, pid, t0)];
  const fdsBefore = samples[0]!.fds;
  const sampler = setInterval(() => void sample(admin, pid, t0).then((s) => samples.push(s), (e: Error) => log(`sample failed: ${e.message}`)), SAMPLE_EVERY_MS);

  const load = new Load(l7, l4);
  const events: { t: number; what: string }[] = [];
  const event = (what: string) => {
    events.push({ t: round((Date.now() - t0) / 1000, 3), what });
    log(what);
  };
  const timers = new Set<NodeJS.Timeout>();
  const later = (ms: number, f: () => void) => {
    const t = setTimeout(() => { timers.delete(t); f(); }, ms);
    timers.add(t);
  };

  // At least two listed backends stay up and fast whatever happens.
  const chaos = (async () => {
    while (Date.now() < until - 5000) {
      await sleep(rand(2000, 6000));
      const healthy = slots.filter((s) => s.listed && s.child && !s.slow);
      const actions: (() => void)[] = [];
      if (healthy.length >= 3) {
        actions.push(() => {
          const s = healthy[Math.floor(Math.random() * healthy.length)]!;
          event(`kill ${s.incarnation}`);
          killBackend(s);
          later(rand(1000, 3000), () => void startBackend(s, dir).then(() => event(`restarted ${s.incarnation}`), (e: Error) => log(`restart failed: ${e.message}`)));
        });
        actions.push(() => {
          const s = healthy[Math.floor(Math.random() * healthy.length)]!;
          s.listed = false;
          writeRoutes(routes, l7, l4, slots);
          note(removals, s.incarnation);
          event(`remove ${s.incarnation} from the routes`);
        });
        actions.push(() => {
          const s = healthy[Math.floor(Math.random() * healthy.length)]!;
          s.slow = true;
          s.child!.send({ slow: SLOW_MS });
          event(`slow ${s.incarnation} (${SLOW_MS} ms)`);
          later(rand(5000, 10_000), () => {
            s.child?.send({ slow: 0 });
            s.slow = false;
            event(`fast ${s.incarnation}`);
          });
        });
      }
      const unlisted = slots.filter((s) => !s.listed && s.child);
      if (unlisted.length > 0) {
        actions.push(() => {
          const s = unlisted[Math.floor(Math.random() * unlisted.length)]!;
          s.listed = true;
          writeRoutes(routes, l7, l4, slots);
          note(additions, s.incarnation);
          event(`add ${s.incarnation} to the routes`);
        });
      }
      actions[Math.floor(Math.random() * actions.length)]?.();
    }
  })();

  // Open-loop pacing, one tick every 10 ms: each kind gets its share of the rate.
  const kinds = Object.entries(KINDS) as [Kind, number][];
  const due = new Map<Kind, number>(kinds.map(([k]) => [k, 0]));
  let lastProgress = t0;
  while (Date.now() < until) {
    const elapsed = (Date.now() - t0) / 1000;
    for (const [kind, share] of kinds) {
      const target = Math.floor(elapsed * opt.rate * share);
      while (due.get(kind)! < target) {
        due.set(kind, due.get(kind)! + 1);
        load.fire(kind);
      }
    }
    if (Date.now() - lastProgress >= 30_000) {
      lastProgress = Date.now();
      const sent = [...load.sent.values()].reduce((a, b) => a + b, 0);
      log(`${Math.round(elapsed)} s: ${sent} sent, ${load.failures.length} failed, meshd RSS ${samples.at(-1)!.rssMiB} MiB`);
    }
    await sleep(10);
  }
  await chaos;
  const drainUntil = Date.now() + REQUEST_TIMEOUT_MS + 1000;
  while (load.inFlight > 0 && Date.now() < drainUntil) await sleep(50);
  load.close();
  clearInterval(sampler);
  for (const t of timers) clearTimeout(t);
  await sleep(3000); // meshd closes what the clients closed
  const last = await sample(admin, pid, t0);
  const fdPorts = { front: [l7, l4], admin, backends: slots.flatMap((sl) => [sl.http, sl.tcp]) };
  const fdsAtEnd = descriptors(pid, fdPorts);
  samples.push(last);
  const countersAfter = await counters(admin);
  // Every connection left now is an idle upstream one, which meshd closes after UPSTREAM_IDLE_MS: none should outlive that.
  log(`waiting ${(UPSTREAM_IDLE_MS + 5000) / 1000} s for idle upstream connections to close`);
  await sleep(UPSTREAM_IDLE_MS + 5000);
  const fdsAfterIdle = descriptors(pid, fdPorts);
  const meshdCounters = {
    retries: countersAfter.retries - countersBefore.retries,
    answered: Object.fromEntries(Object.entries(countersAfter.answered).map(([k, n]) => [k, n - (countersBefore.answered[k] ?? 0)]).filter(([, n]) => n !== 0)),
    clientConnections: countersAfter.clientConnections,
  };

  // Classify the failures.
  const receivedBy = receivers(dir, new Set(load.failures.map((f) => f.id)));
  for (const f of fs.readdirSync(dir).filter((f) => f.startsWith('recv-'))) fs.rmSync(path.join(dir, f));
  const byReason = new Map<string, Record<Verdict, number>>();
  const avoidable: (Failure & { receivedBy?: string | undefined; explanation?: string | undefined })[] = [];
  const verdicts: Record<Verdict, number> = { unavoidable: 0, unattributed: 0, avoidable: 0 };
  for (const f of load.failures) {
    const key = `${f.kind}: ${f.reason}`;
    const entry = byReason.get(key) ?? { unavoidable: 0, unattributed: 0, avoidable: 0 };
    const v = verdict(f, receivedBy.get(f.id));
    entry[v]++;
    verdicts[v]++;
    if (v === 'avoidable') avoidable.push({ ...f, receivedBy: receivedBy.get(f.id), explanation: explain(f, receivedBy.get(f.id)) });
    byReason.set(key, entry);
  }

  // Growth is measured after the first fifth of the run (warm-up: JIT, pools, first GCs).
  const steady = samples.filter((s) => s.t >= (opt.minutes * 60) / 5);
  const totals = (m: Map<Kind, number>) => [...m.values()].reduce((a, b) => a + b, 0);
  const result = {
    date: new Date().toISOString(),
    minutes: opt.minutes,
    rate: opt.rate,
    node: process.version,
    sent: totals(load.sent),
    ok: totals(load.ok),
    skipped: totals(load.skipped),
    failed: load.failures.length,
    ...verdicts,
    byKind: Object.fromEntries(kinds.map(([k]) => [k, { sent: load.sent.get(k), ok: load.ok.get(k), skipped: load.skipped.get(k) }])),
    failuresByReason: Object.fromEntries(byReason),
    avoidableFailures: avoidable.slice(0, 50).map((f) => ({ ...f, sentAt: f.sentAt - t0, doneAt: f.doneAt - t0 })),
    events: { kills: events.filter((e) => e.what.startsWith('kill')).length, adds: events.filter((e) => e.what.startsWith('add')).length,
      removes: events.filter((e) => e.what.startsWith('remove')).length, slow: events.filter((e) => e.what.startsWith('slow')).length, log: events },
    answeredBy: Object.fromEntries([...load.answeredBy].sort()),
    meshd: {
      rssMiB: { start: samples[0]!.rssMiB, end: last.rssMiB, max: Math.max(...samples.map((s) => s.rssMiB)), slopePerMinute: slopePerMinute(steady, (s) => s.rssMiB) },
      heapMiB: { start: samples[0]!.heapMiB, end: last.heapMiB, max: Math.max(...samples.map((s) => s.heapMiB)), slopePerMinute: slopePerMinute(steady, (s) => s.heapMiB) },
      fds: { start: fdsBefore, end: last.fds, max: Math.max(...samples.map((s) => s.fds)), slopePerMinute: slopePerMinute(steady, (s) => s.fds), atEnd: fdsAtEnd, afterIdle: fdsAfterIdle },
      ...meshdCounters,
    },
    samples,
  };
  const out = path.join(sourceDir(), 'results', 'soak-latest.json');
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify(result, null, 2) + '\n');

  const m = result.meshd;
  const lines = [
    `| | |`, `|---|---:|`,
    `| requests sent | ${result.sent} (${result.skipped} skipped: too many in flight) |`,
    `| ok | ${result.ok} |`,
    `| failed | ${result.failed}: ${verdicts.unavoidable} unavoidable, ${verdicts.unattributed} unattributed, ${verdicts.avoidable} avoidable |`,
    ...[...byReason].map(([r, e]) => `| · ${r} | ${e.unavoidable} unavoidable, ${e.unattributed} unattributed, ${e.avoidable} avoidable |`),
    ...avoidable.map((f) => `| · avoidable ${f.id} at ${round((f.doneAt - t0) / 1000, 1)} s | ${f.explanation ?? `${f.reason}, received by ${f.receivedBy ?? 'no backend'}`} |`).slice(0, 10),
    `| chaos | ${result.events.kills} kills, ${result.events.adds} adds, ${result.events.removes} removes, ${result.events.slow} slow spells |`,
    `| meshd RSS MiB | ${m.rssMiB.start} → ${m.rssMiB.end} (max ${m.rssMiB.max}), ${m.rssMiB.slopePerMinute} MiB/min |`,
    `| meshd heap used MiB | ${m.heapMiB.start} → ${m.heapMiB.end} (max ${m.heapMiB.max}), ${m.heapMiB.slopePerMinute} MiB/min |`,
    `| meshd open descriptors | ${m.fds.start} before load → ${m.fds.end} at the end (max ${m.fds.max}), ${m.fds.slopePerMinute}/min |`,
    `| · at the end | ${Object.entries(fdsAtEnd).map(([k, n]) => `${n} ${k}`).join(', ')} |`,
    `| · ${(UPSTREAM_IDLE_MS + 5000) / 1000} s later | ${Object.entries(fdsAfterIdle).map(([k, n]) => `${n} ${k}`).join(', ')} |`,
    `| meshd retries / answered itself | ${m.retries} / ${JSON.stringify(m.answered)} |`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
  log(`results: ${out}; meshd log: ${path.join(dir, 'meshd.log')}`);
  killTree(meshd);
}

try {
  await main();
} finally {
  killAll();
}
