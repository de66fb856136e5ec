// --workers: the meshd command as a real process group (a primary and two
// worker processes) on loopback. A routes-file change is served by every worker
// once the admin API reports it; after a sequence of changes (each sent to the
// workers as the routes that changed) every worker serves exactly the primary's
// routes, a restarted one too; a worker handed routes that do not follow its
// table asks for the whole table; a killed worker is restarted while the other
// serves; SIGTERM drains every worker; /metrics sums the workers; a backend one
// worker ejects is out on the others too; certificates from --tls-dir and from
// ACME are served by every worker, and a TLS session resumes on any of them.
import assert from 'node:assert/strict';
import { fork, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config.js';
import type { RouteSpec } from '../../src/table/spec.js';
import type { FromWorker, ToWorker } from '../../src/workers/messages.js';
import { TestCA } from '../support/certs.js';
import type { FileRoute } from '../support/meshd.js';
import { Backend, freePort, get, waitFor, type Reply } from '../support/net.js';
import { httpsServed, startPebble } from '../support/pebble.js';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/main.js');
const WORKER = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/workers/worker.js');
const WORKERS = 2;
const DRAIN_MS = 5000;

interface Running {
  pid: number;
  admin: number;
  routesFile: string;
  exited: Promise<number | null>;
  logs(): string;
}

/** The worker processes of a primary, by pid. */
function children(pid: number): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function writeRoutes(file: string, routes: FileRoute[]): void {
  fs.writeFileSync(`${file}.tmp`, stringify({ routes }));
  fs.renameSync(`${file}.tmp`, file);
}

/**
 * Starts meshd with two workers, `tlsFiles` in its --tls-dir; t.after kills the
 * primary and every worker it had, by pid, whatever the outcome.
 */
async function startMeshd(t: TestContext, routes: FileRoute[], flags: string[] = [], tlsFiles: Record<string, string> = {}): Promise<Running> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshd-workers-'));
  const routesFile = path.join(dir, 'routes.yml');
  writeRoutes(routesFile, routes);
  fs.mkdirSync(path.join(dir, 'tls'));
  for (const [name, text] of Object.entries(tlsFiles)) fs.writeFileSync(path.join(dir, 'tls', name), text);
  const admin = await freePort();
  const child = spawn(process.execPath, [
    MAIN, '--provider', 'file', '--routes', routesFile, '--listen-host', '127.0.0.1', '--admin-addr', `127.0.0.1:${admin}`,
    '--workers', String(WORKERS), '--health-interval', '200ms', '--health-timeout', '150ms', '--drain-timeout', `${DRAIN_MS}ms`,
    '--tls-dir', path.join(dir, 'tls'), ...flags,
  ], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH } });
  const pid = child.pid!;
  const seen = new Set<number>();
  const watch = setInterval(() => children(pid).forEach((p) => seen.add(p)), 100);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.after(() => {
    clearInterval(watch);
    children(pid).forEach((p) => seen.add(p));
    for (const p of [pid, ...seen]) {
      try { process.kill(p, 'SIGKILL'); } catch { /* already gone */ }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });
  let logs = '';
  child.stdout!.on('data', (c) => (logs += c));
  child.stderr!.on('data', (c) => (logs += c));
  const m = { pid, admin, routesFile, exited, logs: () => logs };
  try {
    await waitFor(async () => (await get(admin, '/readyz')).status === 200, 30_000, 'meshd ready');
    await waitFor(async () => series(await metrics(m), 'meshd_worker_up').every(([, v]) => v === 1) && children(pid).length === WORKERS, 30_000, 'every worker up');
  } catch (err) {
    throw new Error(`${(err as Error).message}; log:\n${logs.slice(-3000)}`);
  }
  return m;
}

/** Every sample of /metrics, as [series, value]. */
async function metrics(m: Running): Promise<[string, number][]> {
  const res = await get(m.admin, '/metrics');
  return res.body.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => {
    const i = l.lastIndexOf(' ');
    return [l.slice(0, i), Number(l.slice(i + 1))];
  });
}

const series = (all: [string, number][], name: string) => all.filter(([s]) => s === name || s.startsWith(`${name}{`));
const total = (all: [string, number][], name: string) => series(all, name).reduce((n, [, v]) => n + v, 0);

async function routesOf(m: Running): Promise<{ version: number; routes: { name: string; backends: { address: string; state: string; requests: number; health: { ejected: boolean } }[] }[] }> {
  return JSON.parse((await get(m.admin, '/api/routes')).body);
}

/** A keep-alive agent that counts the connections it opens. */
class HeldConnections extends http.Agent {
  opened = 0;
  constructor(readonly size: number) {
    super({ keepAlive: true, maxSockets: size, maxFreeSockets: size });
  }

  override createConnection(...args: Parameters<http.Agent['createConnection']>): net.Socket {
    this.opened++;
    return (super.createConnection as (...a: unknown[]) => net.Socket)(...args);
  }

  /** One request on each connection at once. */
  round(port: number, headers: http.OutgoingHttpHeaders = {}): Promise<Reply[]> {
    return Promise.all(Array.from({ length: this.size }, () => get(port, '/', headers, this)));
  }
}

/** Waits until every worker holds some of the open client connections: the test reaches them all. */
async function spreadOverWorkers(m: Running): Promise<void> {
  await waitFor(async () => {
    const perWorker = series(await metrics(m), 'meshd_worker_client_connections');
    return perWorker.length === WORKERS && perWorker.every(([, v]) => v > 0);
  }, 5000, 'connections on every worker');
}

/** Every worker has served some of the requests so far. */
async function servedByEveryWorker(m: Running): Promise<void> {
  const perWorker = series(await metrics(m), 'meshd_worker_requests_total');
  assert.equal(perWorker.length, WORKERS);
  assert.ok(perWorker.every(([, v]) => v > 0), `requests per worker: ${JSON.stringify(perWorker)}`);
}

/**
 * Every worker answers each host as `expected` says (`200 <backend>`, or 404
 * for a host no route has): the same keep-alive connections, spread over
 * both workers, ask for every host.
 */
async function servesEverywhere(m: Running, port: number, expected: Record<string, string>): Promise<void> {
  const held = new HeldConnections(16);
  try {
    await held.round(port);
    await spreadOverWorkers(m);
    for (const [host, answer] of Object.entries(expected)) {
      const answers = await held.round(port, { host });
      assert.deepEqual(answers.map((r) => (r.status === 200 ? `200 ${r.body}` : String(r.status))), Array(16).fill(answer), `host ${host}`);
    }
    assert.equal(held.opened, 16, 'the same connections answered every host');
  } finally {
    held.destroy();
  }
}

/** Writes the routes and waits until every worker has confirmed them and their backends are probed. */
async function change(m: Running, routes: FileRoute[]): Promise<void> {
  const { version } = await routesOf(m);
  writeRoutes(m.routesFile, routes);
  await waitFor(async () => {
    const now = await routesOf(m);
    return now.version > version && now.routes.length === routes.length && now.routes.every((r) => r.backends.every((b) => b.state === 'active'));
  }, 10_000, 'the change confirmed and probed');
}

describe('--workers', () => {
  it('serves a routes-file change from every worker once /api/routes reports its version', async (t) => {
    const a = await new Backend('a').start();
    t.after(() => a.kill());
    const port = await freePort();
    const route = (hosts: string[]): FileRoute => ({ name: 'web', mode: 'http', publish: port, hosts, backends: [a.address] });
    const m = await startMeshd(t, [route(['x.test'])]);
    await waitFor(async () => (await get(port, '/', { host: 'x.test' })).status === 200, 5000, 'backend probed');

    const held = new HeldConnections(40);
    t.after(() => held.destroy());
    const before = await held.round(port, { host: 'z.test' });
    assert.deepEqual(new Set(before.map((r) => r.status)), new Set([404]), 'no route claims z.test yet');
    await spreadOverWorkers(m);

    const { version } = await routesOf(m);
    writeRoutes(m.routesFile, [route(['x.test', 'z.test'])]);
    await waitFor(async () => (await routesOf(m)).version > version, 5000, 'the new table reported');
    // No waiting beyond the report: every worker must have the table already.
    const after = await held.round(port, { host: 'z.test' });
    assert.deepEqual(after.map((r) => `${r.status} ${r.body}`), Array(40).fill('200 a'));
    assert.equal(held.opened, 40, 'the same connections, on both workers, served both rounds');
  });

  it('serves exactly the primary\'s routes from every worker after a sequence of changes, and from a restarted worker', async (t) => {
    const backends = await Promise.all(['a', 'b', 'c'].map((n) => new Backend(n).start()));
    t.after(() => Promise.all(backends.map((b) => b.kill())));
    const [a, b, c] = backends.map((x) => x.address) as [string, string, string];
    const port = await freePort();
    const r = (n: number, hosts: string[], ...to: string[]): FileRoute => ({ name: `r${n}`, mode: 'http', publish: port, hosts, backends: to });
    const m = await startMeshd(t, [r(0, ['h0.test'], a), r(1, ['h1.test'], b), r(2, ['h2.test'], c), r(3, ['h3.test'], a)]);
    const steps: FileRoute[][] = [
      [r(0, ['h0.test'], a), r(1, ['h1.test'], c), r(2, ['h2.test'], c), r(3, ['h3.test'], a)],
      [r(0, ['h0.test'], a), r(1, ['h1.test'], c), r(3, ['h3.test'], a)],
      [r(0, ['h0.test'], a), r(1, ['h1.test'], c), r(3, ['h3.test'], a), r(4, ['h4.test'], b)],
      [r(0, ['h0.test'], a), r(1, ['h1.test'], c), r(3, ['h3.test', 'h5.test'], a), r(4, ['h4.test'], b)],
      [r(0, ['h0.test'], b), r(1, ['h1.test'], c), r(3, ['h3.test', 'h5.test'], a), r(5, ['h6.test'], a)],
    ];
    for (const routes of steps) await change(m, routes);
    const last = { 'h0.test': '200 b', 'h1.test': '200 c', 'h2.test': '404', 'h3.test': '200 a', 'h4.test': '404', 'h5.test': '200 a', 'h6.test': '200 a' };
    await servesEverywhere(m, port, last);

    // One worker dies; the routes change while it is down and once more after it is back.
    const [victim] = children(m.pid);
    process.kill(victim!, 'SIGKILL');
    await waitFor(() => m.logs().includes('worker exited; restarting it'), 5000, 'the primary to see the exit');
    await change(m, [r(0, ['h0.test'], c), r(1, ['h1.test'], c), r(3, ['h3.test', 'h5.test'], a), r(5, ['h6.test'], a)]);
    await waitFor(async () => series(await metrics(m), 'meshd_worker_up').every(([, v]) => v === 1) && children(m.pid).length === WORKERS, 15_000, 'the worker restarted');
    await change(m, [r(0, ['h0.test'], c), r(1, ['h1.test'], a), r(3, ['h3.test'], a), r(5, ['h6.test'], a), r(6, ['h2.test'], b)]);
    await servesEverywhere(m, port, { ...last, 'h0.test': '200 c', 'h1.test': '200 a', 'h2.test': '200 b', 'h5.test': '404' });
    assert.doesNotMatch(m.logs(), /out of step/, 'no worker missed a change');
  });

  it('a worker handed routes that do not follow its table asks for the whole table', async (t) => {
    const a = await new Backend('a').start();
    t.after(() => a.kill());
    const port = await freePort();
    const child = fork(WORKER, [], { serialization: 'advanced', stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
    t.after(() => child.kill('SIGKILL'));
    const got: FromWorker[] = [];
    child.on('message', (m: FromWorker) => got.push(m));
    const reply = async (what: FromWorker['t'], n: number) => {
      await waitFor(() => got.filter((m) => m.t === what).length >= n, 10_000, `${what} #${n}`);
      return got.filter((m) => m.t === what)[n - 1]!;
    };
    const send = (m: ToWorker) => child.send(m);
    await reply('ready', 1);
    const config = parseConfig(['--provider', 'file', '--routes', '/dev/null', '--listen-host', '127.0.0.1', '--workers', '2', '--log-level', 'error']);
    assert.notEqual(config, 'help');
    send({ t: 'init', config: config as Exclude<typeof config, 'help'>, worker: 1, ticketKeys: Buffer.alloc(48) });
    const route = (hosts: string[]): RouteSpec => ({
      name: 'web', mode: 'http', port, hosts, health: { interval: 2000, timeout: 1000, rise: 2, fall: 3 },
      backends: [{ id: 'a', host: '127.0.0.1', port: a.port, draining: false }], proxyProtocol: false, problems: [],
    });
    const up = [{ route: `${port} web`, backend: `a@127.0.0.1:${a.port}`, flag: 'pending' as const, value: false }];
    send({ t: 'table', version: 1, table: { routes: [route(['x.test'])], notices: [] }, flags: up });
    assert.deepEqual((await reply('applied', 1) as { version: number }).version, 1);
    send({ t: 'routes', version: 2, base: 1, routes: [route(['x.test', 'y.test'])], removed: [], tls: undefined, flags: up });
    assert.equal((await reply('applied', 2) as { version: number }).version, 2);
    assert.equal((await get(port, '/', { host: 'y.test' })).body, 'a', 'the changed route is served');

    send({ t: 'routes', version: 9, base: 8, routes: [], removed: [`${port} web`], tls: undefined, flags: [] });
    assert.deepEqual(await reply('resync', 1), { t: 'resync', version: 2 });
    assert.equal((await get(port, '/', { host: 'y.test' })).body, 'a', 'routes that do not follow are not applied');
    send({ t: 'table', version: 9, table: { routes: [route(['z.test'])], notices: [] }, flags: up });
    assert.equal((await reply('applied', 3) as { version: number }).version, 9);
    assert.equal((await get(port, '/', { host: 'z.test' })).body, 'a');
    assert.equal((await get(port, '/', { host: 'y.test' })).status, 404);
  });

  it('restarts a killed worker while the other keeps serving', async (t) => {
    const a = await new Backend('a').start();
    t.after(() => a.kill());
    const port = await freePort();
    const m = await startMeshd(t, [{ name: 'web', mode: 'http', publish: port, backends: [a.address] }]);
    await waitFor(async () => (await get(port)).status === 200, 5000, 'backend probed');
    const [victim, other] = children(m.pid);

    // Four clients in a loop, each a new connection per request.
    const results: { at: number; end: number; ok: boolean }[] = [];
    let running = true;
    const load = Promise.all(Array.from({ length: 4 }, async () => {
      while (running) {
        const at = Date.now();
        const ok = await get(port).then((r) => r.status === 200 && r.body === 'a', () => false);
        results.push({ at, end: Date.now(), ok });
      }
    }));
    await new Promise((r) => setTimeout(r, 300));
    const killedAt = Date.now();
    process.kill(victim!, 'SIGKILL');
    await waitFor(() => m.logs().includes('worker exited; restarting it'), 5000, 'the primary to see the exit');
    const noticedAt = Date.now();
    await waitFor(async () => {
      const all = await metrics(m);
      return series(all, 'meshd_worker_up').every(([, v]) => v === 1) && total(all, 'meshd_worker_restarts_total') === 1;
    }, 15_000, 'the worker restarted');
    const restartedAt = Date.now();
    await new Promise((r) => setTimeout(r, 300));
    running = false;
    await load;

    const pids = children(m.pid);
    assert.equal(pids.length, WORKERS);
    assert.ok(pids.includes(other!) && !pids.includes(victim!), 'a new process took the killed one\'s place');
    assert.deepEqual(results.filter((r) => r.end < killedAt && !r.ok), [], 'no failure before the kill');
    // Only connections the killed worker had accepted before the primary saw it go may fail.
    const afterNotice = results.filter((r) => r.at >= noticedAt);
    assert.deepEqual(afterNotice.filter((r) => !r.ok), [], 'no failure once the primary knew');
    assert.ok(results.filter((r) => r.at >= noticedAt && r.at < restartedAt).length > 0, 'requests were served while one worker was down');
  });

  it('drains every worker on SIGTERM: in-flight requests finish, new connections are refused', async (t) => {
    const slow = await new Backend('slow', (req, res) => {
      if (req.url === '/health') return void res.end('ok');
      setTimeout(() => res.end('done'), 1500);
    }).start();
    t.after(() => slow.kill());
    const port = await freePort();
    const m = await startMeshd(t, [{ name: 'web', mode: 'http', publish: port, backends: [slow.address] }]);
    const workers = children(m.pid);
    await waitFor(async () => (await routesOf(m)).routes[0]!.backends[0]!.state === 'active', 5000, 'backend probed');

    const inFlight = Array.from({ length: 6 }, () => get(port));
    await waitFor(async () => {
      const perWorker = series(await metrics(m), 'meshd_worker_in_flight');
      return perWorker.reduce((n, [, v]) => n + v, 0) === 6 && perWorker.every(([, v]) => v > 0);
    }, 5000, 'slow requests in flight on every worker');
    process.kill(m.pid, 'SIGTERM');
    await waitFor(() => get(port).then(() => false, (err: NodeJS.ErrnoException) => err.code === 'ECONNREFUSED'), 3000, 'new connections refused');
    const answers = await Promise.all(inFlight);
    assert.deepEqual(answers.map((r) => `${r.status} ${r.body}`), Array(6).fill('200 done'));
    assert.equal(await m.exited, 0);
    assert.deepEqual(workers.filter(alive), [], 'every worker exited');
  });

  it('sums the workers\' counters in /metrics and /api/routes', async (t) => {
    const a = await new Backend('a').start();
    t.after(() => a.kill());
    const port = await freePort();
    const m = await startMeshd(t, [{ name: 'web', mode: 'http', publish: port, backends: [a.address] }]);
    await waitFor(async () => (await routesOf(m)).routes[0]!.backends[0]!.state === 'active', 5000, 'backend probed');

    const N = 60;
    for (let i = 0; i < N; i += 10) {
      const batch = await Promise.all(Array.from({ length: 10 }, () => get(port)));
      assert.ok(batch.every((r) => r.status === 200));
    }
    const all = await metrics(m);
    assert.equal(total(all, 'meshd_backend_requests_total'), N);
    assert.equal(total(all, 'meshd_request_duration_seconds_count'), N);
    await servedByEveryWorker(m);
    assert.equal(total(all, 'meshd_worker_requests_total'), N);
    assert.equal((await routesOf(m)).routes[0]!.backends[0]!.requests, N);
  });

  it('takes a backend one worker ejected out of every worker', async (t) => {
    const a = await new Backend('a').start();
    let broken = false;
    let trafficWhileBroken = 0;
    const b = await new Backend('b', (req, res) => {
      // While broken, every connection is reset, probes too: the prober would otherwise end the ejection.
      if (broken) {
        if (req.url !== '/health') trafficWhileBroken++;
        return void req.socket.destroy();
      }
      res.end(req.url === '/health' ? 'ok' : 'b');
    }).start();
    t.after(() => Promise.all([a.kill(), b.kill()]));
    const port = await freePort();
    // A high fall: failed probes do not take b down during the test, so only the traffic's ejection can.
    const m = await startMeshd(t, [{ name: 'web', mode: 'http', publish: port, backends: [a.address, b.address], health: { path: '/health', fall: 100 } }]);
    await waitFor(async () => (await routesOf(m)).routes[0]!.backends.every((x) => x.state === 'active'), 5000, 'backends probed');

    broken = true;
    const one = new HeldConnections(1);
    t.after(() => one.destroy());
    await waitFor(async () => {
      await get(port, '/', {}, one);
      return (await routesOf(m)).routes[0]!.backends.find((x) => x.address === b.address)!.health.ejected;
    }, 5000, 'b ejected by the traffic of one connection');
    assert.equal(one.opened, 1, 'all of it through one connection, so one worker');

    const held = new HeldConnections(20);
    t.after(() => held.destroy());
    const seenByOne = trafficWhileBroken;
    const answers = await held.round(port);
    await spreadOverWorkers(m);
    assert.deepEqual(answers.map((r) => `${r.status} ${r.body}`), Array(20).fill('200 a'));
    // A worker that had not heard of the ejection would try b (and retry on a) until it had seen failures of its own.
    assert.equal(trafficWhileBroken, seenByOne, 'no worker sent b anything more');
  });

  it('serves a --tls-dir certificate from every worker, and resumes a session on any of them', async (t) => {
    const ca = new TestCA();
    t.after(() => ca.remove());
    const pem = ca.issue(['a.test']);
    const a = await new Backend('a').start();
    t.after(() => a.kill());
    const port = await freePort();
    const m = await startMeshd(t, [{ name: 'site', mode: 'https', publish: port, hosts: ['a.test'], backends: [a.address] }], [], { 'a.crt': pem.cert, 'a.key': pem.key });
    await waitFor(async () => (await routesOf(m)).routes[0]!.backends[0]!.state === 'active', 5000, 'backend probed');

    // Each connection takes the session ticket of the one before; workers share the ticket keys.
    let session: Buffer | undefined;
    const reused: boolean[] = [];
    for (let i = 0; i < 20; i++) {
      const socket = tls.connect({ host: '127.0.0.1', port, servername: 'a.test', ca: ca.pem, session, maxVersion: 'TLSv1.2' });
      socket.once('secureConnect', () => {
        reused.push(socket.isSessionReused());
        session = socket.getSession();
      });
      socket.write('GET / HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n');
      let answer = '';
      socket.setEncoding('utf8');
      socket.on('data', (c: string) => (answer += c));
      await new Promise<void>((resolve, reject) => {
        socket.once('close', () => resolve());
        socket.once('error', reject);
      });
      assert.match(answer, /^HTTP\/1\.1 200 [^]*\r\n\r\na$/);
    }
    assert.deepEqual(reused, [false, ...Array(19).fill(true)]);
    await servedByEveryWorker(m);
  });

  it('orders an ACME certificate whose challenge any worker answers, and every worker serves it', { timeout: 120_000 }, async (t) => {
    const a = await new Backend('a').start();
    t.after(() => a.kill());
    const [httpPort, httpsPort] = [await freePort(), await freePort()];
    const pebble = await startPebble({ httpPort, validitySeconds: 3600 });
    t.after(() => pebble.stop());
    const root = await pebble.root();
    const storage = fs.mkdtempSync(path.join(os.tmpdir(), 'meshd-workers-acme-'));
    t.after(() => fs.rmSync(storage, { recursive: true, force: true }));
    const m = await startMeshd(t, [
      { name: 'plain', mode: 'http', publish: httpPort, backends: [a.address] },
      { name: 'site', mode: 'https', publish: httpsPort, hosts: ['a.test'], tls: 'acme', backends: [a.address] },
    ], ['--acme-directory', pebble.directoryUrl, '--acme-ca-file', pebble.caFile, '--acme-storage', storage, '--acme-email', 'ops@a.test']);
    await waitFor(async () => (await routesOf(m) as unknown as { routes: { acme?: { state: string } }[] }).routes.some((r) => r.acme?.state === 'valid'), 60_000, 'a valid certificate')
      .catch((err: Error) => {
        throw new Error(`${err.message}\n${pebble.output().slice(-2000)}\n${m.logs().slice(-2000)}`);
      });
    const served = await Promise.all(Array.from({ length: 20 }, () => httpsServed('127.0.0.1', httpsPort, 'a.test', root)));
    assert.deepEqual(served.map((r) => `${r.status} ${r.body} ${r.leaf.subjectAltName}`), Array(20).fill('200 a DNS:a.test'));
    await servedByEveryWorker(m);
  });
});
