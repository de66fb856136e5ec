// Client limits on loopback with real sockets: slow heads (slowloris), idle
// keep-alive and L4 connections, oversized heads, connection caps for the whole
// process and per route, and clients that stop reading. Each trip must show in
// /metrics, and ordinary clients must keep being served.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { TestMeshd } from '../support/meshd.js';
import { Backend, freePort, get, waitFor } from '../support/net.js';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/main.js');

interface Raw {
  data: string;
  closed: boolean;
  ms: number;
}

/** Sends raw bytes on a fresh connection and collects what comes back until it closes or `waitMs` pass. */
function raw(port: number, bytes: string, waitMs: number): Promise<Raw> {
  return new Promise((resolve) => {
    const start = Date.now();
    const s = net.connect(port, '127.0.0.1', () => { if (bytes) s.write(bytes); });
    let data = '';
    const done = (closed: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve({ data, closed, ms: Date.now() - start });
    };
    const timer = setTimeout(() => done(false), waitMs);
    s.setEncoding('latin1');
    s.on('data', (c: string) => (data += c));
    s.on('error', () => {});
    s.on('close', () => done(true));
  });
}

/** One counter of meshd_client_limit_trips_total, read from the admin API. */
async function trips(adminPort: number, limit: string): Promise<number> {
  const text = (await get(adminPort, '/metrics')).body;
  const m = new RegExp(`^meshd_client_limit_trips_total\\{limit="${limit}"\\} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

/** A TCP backend that echoes; its open sockets are kept so tests can count and close them. */
async function echoServer(): Promise<{ server: net.Server; port: number; sockets: Set<net.Socket> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.once('close', () => sockets.delete(s));
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as net.AddressInfo).port, sockets };
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

/** Writes `text` and waits until it comes back (through an echo backend). */
function echo(s: net.Socket, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = '';
    const onData = (c: Buffer) => {
      got += c.toString();
      if (got === text) {
        s.off('data', onData);
        resolve();
      }
    };
    s.on('data', onData);
    s.once('close', () => reject(new Error('closed before the echo')));
    s.write(text);
  });
}

describe('client limits (L7)', () => {
  let port: number;
  let m: TestMeshd;
  let backend: Backend;

  before(async () => {
    port = await freePort();
    backend = await new Backend('a').start();
    m = await new TestMeshd().start([{ name: 'web', publish: port, mode: 'http', backends: [backend.address] }],
      ['--client-header-timeout', '500ms', '--client-idle-timeout', '400ms', '--max-header-size', '4KiB']);
  });
  after(async () => {
    await m.stop();
    await backend.kill();
  });

  it('answers 408 and closes a client whose request head does not arrive in time, and one that sends nothing', async () => {
    const before = await trips(m.adminPort, 'client-header-timeout');
    const [slow, silent] = await Promise.all([raw(port, 'GET / HTTP/1.1\r\nHost: web\r\nX-A: 1\r\n', 5000), raw(port, '', 5000)]);
    for (const r of [slow, silent]) {
      assert.match(r.data, /^HTTP\/1\.1 408 /);
      assert.match(r.data, /x-meshd-error: REQUEST_TIMEOUT/);
      assert.ok(r.closed, 'connection closed');
      assert.ok(r.ms >= 450, `cut after ${r.ms} ms, not before the timeout`);
    }
    assert.equal(await trips(m.adminPort, 'client-header-timeout'), before + 2);
    assert.equal((await get(port)).status, 200);
  });

  it('closes a keep-alive connection idle past the idle timeout, and keeps a busy one', async () => {
    const before = await trips(m.adminPort, 'client-idle-timeout');
    const s = await connect(port);
    try {
      let data = '';
      s.setEncoding('latin1');
      s.on('data', (c: string) => (data += c));
      const closed = new Promise<number>((resolve) => s.once('close', () => resolve(Date.now())));
      // Busy: a request every 100 ms for 1.2 s on one connection, three times the idle timeout.
      for (let i = 1; i <= 12; i++) {
        s.write('GET / HTTP/1.1\r\nHost: web\r\n\r\n');
        await waitFor(() => data.split('HTTP/1.1 200 ').length - 1 === i, 2000, `answer ${i}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(!s.destroyed, 'the busy connection is still open');
      const idleFrom = Date.now();
      const after = (await closed) - idleFrom;
      assert.ok(after >= 250 && after < 3000, `idle connection closed after ${after} ms`);
      assert.equal(await trips(m.adminPort, 'client-idle-timeout'), before + 1);
    } finally {
      s.destroy();
    }
  });

  it('answers 431 to a request head over --max-header-size and serves one under it', async () => {
    const before = await trips(m.adminPort, 'max-header-size');
    const big = await raw(port, `GET / HTTP/1.1\r\nHost: web\r\nX-Big: ${'a'.repeat(6 * 1024)}\r\n\r\n`, 3000);
    assert.match(big.data, /^HTTP\/1\.1 431 /);
    assert.ok(big.closed);
    const ok = await raw(port, `GET / HTTP/1.1\r\nHost: web\r\nX-Fine: ${'a'.repeat(2 * 1024)}\r\nConnection: close\r\n\r\n`, 3000);
    assert.match(ok.data, /^HTTP\/1\.1 200 /);
    assert.equal(await trips(m.adminPort, 'max-header-size'), before + 1);
  });

  it('answers pipelined requests in order, one at a time, and cuts a client that piles up more than it reads', async () => {
    let inFlight = 0;
    let most = 0;
    let hits = 0;
    const slowFirst = new Backend('p', (req, res) => {
      hits++;
      most = Math.max(most, ++inFlight);
      // The first answer is the slowest: a parallel pipeline would finish the others first.
      setTimeout(() => {
        inFlight--;
        res.end(`path=${req.url}`);
      }, req.url === '/0' ? 100 : 1);
    });
    await slowFirst.start();
    const p2 = await freePort();
    await m.update([{ name: 'web', publish: port, mode: 'http', backends: [backend.address] }, { name: 'p', publish: p2, mode: 'http', backends: [slowFirst.address] }]);
    try {
      const n = 40;
      let text = '';
      for (let i = 0; i < n; i++) text += `GET /${i} HTTP/1.1\r\nHost: p\r\n${i === n - 1 ? 'Connection: close\r\n' : ''}\r\n`;
      const r = await raw(p2, text, 10_000);
      const bodies = [...r.data.matchAll(/path=\/(\d+)/g)].map((x) => Number(x[1]));
      assert.deepEqual(bodies, Array.from({ length: n }, (_, i) => i));
      assert.equal(most, 1, 'one request of the connection at a time');

      const before = await trips(m.adminPort, 'pipeline-depth');
      hits = 0;
      const flood = await raw(p2, 'GET /x HTTP/1.1\r\nHost: p\r\n\r\n'.repeat(20_000), 5000);
      assert.ok(flood.closed, 'the flooding client is cut off');
      assert.ok(hits <= 1, `${hits} of its requests reached the backend`);
      assert.equal(await trips(m.adminPort, 'pipeline-depth'), before + 1);
      assert.equal((await get(p2, '/after')).body, 'path=/after');
    } finally {
      await slowFirst.kill();
    }
  });

  it('holds a fast backend back while the client does not read (bounded buffer), and delivers every byte once it does', async () => {
    const size = 64 << 20;
    let written = 0;
    const big = new Backend('big', (_req, res) => {
      res.writeHead(200, { 'content-length': size });
      const chunk = Buffer.alloc(64 * 1024, 'x');
      const pump = () => {
        while (written < size) {
          written += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    });
    await big.start();
    const p2 = await freePort();
    await m.update([{ name: 'web', publish: port, mode: 'http', backends: [backend.address] }, { name: 'big', publish: p2, mode: 'http', backends: [big.address] }]);
    const s = net.connect(p2, '127.0.0.1');
    try {
      s.pause();
      s.write('GET / HTTP/1.1\r\nHost: big\r\n\r\n');
      // Let every buffer on the way fill up, then check the backend is held back.
      await waitFor(() => written > 0, 5000, 'backend started writing');
      let last = -1;
      await waitFor(async () => {
        const now = written;
        const still = now === last;
        last = now;
        await new Promise((r) => setTimeout(r, 200));
        return still;
      }, 10_000, 'backend to be held back');
      assert.ok(written < 24 << 20, `backend got ${written >> 20} MiB out while the client read nothing`);
      let received = 0;
      s.on('data', (c: Buffer) => (received += c.length));
      s.resume();
      await waitFor(() => received >= size, 20_000, 'the whole response');
      assert.ok(received > size && received < size + 1024, 'body plus one head');
    } finally {
      s.destroy();
      await big.kill();
    }
  });
});

describe('connection caps', () => {
  let echoA: Awaited<ReturnType<typeof echoServer>>;
  let m: TestMeshd;
  let tcpPort: number;

  before(async () => {
    echoA = await echoServer();
    tcpPort = await freePort();
    m = await new TestMeshd().start([{ name: 'echo', publish: tcpPort, backends: [`127.0.0.1:${echoA.port}`] }], ['--max-connections', '20']);
  });
  after(async () => {
    await m.stop();
    for (const s of echoA.sockets) s.destroy();
    echoA.server.close();
  });

  it('past --max-connections closes new connections at once and leaves the open ones serving', async () => {
    const before = await trips(m.adminPort, 'max-connections');
    const held: net.Socket[] = [];
    try {
      for (let i = 0; i < 20; i++) {
        const s = await connect(tcpPort);
        held.push(s);
        await echo(s, `hello ${i}`);
      }
      const extra = await raw(tcpPort, 'anyone?', 2000);
      assert.ok(extra.closed && extra.data === '', 'the 21st connection is closed without an answer');
      assert.equal(await trips(m.adminPort, 'max-connections'), before + 1);
      for (const [i, s] of held.entries()) await echo(s, `still ${i}`);
      // A place freed is a place taken.
      held.shift()!.destroy();
      await waitFor(() => m.meshd.stats.connections < 20, 2000, 'a connection to close');
      const again = await connect(tcpPort);
      held.push(again);
      await echo(again, 'in again');
    } finally {
      for (const s of held) s.destroy();
    }
  });
});

describe('per-route caps and idle timeout', () => {
  let echoA: Awaited<ReturnType<typeof echoServer>>;
  let slow: Backend;
  let fast: Backend;
  let m: TestMeshd;
  let capped: number;
  let open: number;
  let web: number;

  before(async () => {
    echoA = await echoServer();
    slow = await new Backend('slow', (_req, res) => void setTimeout(() => res.end('slow'), 400)).start();
    fast = await new Backend('fast').start();
    [capped, open, web] = [await freePort(), await freePort(), await freePort()];
    const echo = `127.0.0.1:${echoA.port}`;
    m = await new TestMeshd().start([
      { name: 'capped', publish: capped, backends: [echo], maxConnections: 2, idleTimeout: '300ms' },
      { name: 'open', publish: open, backends: [echo] },
      { name: 'slow', publish: web, mode: 'http', hosts: ['slow.test'], backends: [slow.address], maxConnections: 1 },
      { name: 'fast', publish: web, mode: 'http', backends: [fast.address] },
    ]);
  });
  after(async () => {
    await m.stop();
    for (const s of echoA.sockets) s.destroy();
    echoA.server.close();
    await slow.kill();
    await fast.kill();
  });

  it('L4: past meshd.max-connections a route closes new connections; another route is untouched', async () => {
    const before = await trips(m.adminPort, 'route-max-connections');
    const held: net.Socket[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        held.push(await connect(capped));
        await echo(held[i]!, `c${i}`);
      }
      const third = await raw(capped, 'me too', 2000);
      assert.ok(third.closed && third.data === '', 'third connection closed without an answer');
      assert.equal(await trips(m.adminPort, 'route-max-connections'), before + 1);
      for (let i = 0; i < 5; i++) {
        held.push(await connect(open));
        await echo(held.at(-1)!, `o${i}`);
      }
    } finally {
      for (const s of held) s.destroy();
    }
  });

  it('L4: meshd.idle-timeout closes a quiet connection and keeps a talking one', async () => {
    const before = await trips(m.adminPort, 'tcp-idle-timeout');
    const talking = await connect(capped);
    const quiet = await connect(capped);
    try {
      await echo(quiet, 'once');
      const quietClosed = new Promise<number>((r) => { const t = Date.now(); quiet.once('close', () => r(Date.now() - t)); });
      for (let i = 0; i < 8; i++) {
        await echo(talking, `t${i}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const after = await quietClosed;
      assert.ok(after >= 250 && after < 2000, `quiet connection closed after ${after} ms`);
      assert.ok(!talking.destroyed, 'the talking connection, 800 ms long, is open');
      assert.equal(await trips(m.adminPort, 'tcp-idle-timeout'), before + 1);
    } finally {
      talking.destroy();
      quiet.destroy();
    }
  });

  it('L7: past meshd.max-connections a route answers 503 ROUTE_AT_CAPACITY; the port\'s other route is untouched', async () => {
    const [first, second] = await Promise.all([get(web, '/', { host: 'slow.test' }), new Promise((r) => setTimeout(r, 100)).then(() => get(web, '/', { host: 'slow.test' }))]);
    assert.equal(first.status, 200);
    assert.equal(second.status, 503);
    assert.equal(second.headers['x-meshd-error'], 'ROUTE_AT_CAPACITY');
    const during = get(web, '/', { host: 'slow.test' });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal((await get(web, '/', { host: 'other.test' })).body, 'fast', 'the default route serves meanwhile');
    assert.equal((await during).status, 200);
    assert.equal((await get(web, '/', { host: 'slow.test' })).status, 200, 'the place is free again');
  });
});

describe('slowloris against a meshd process', () => {
  const children = new Set<ChildProcess>();
  const sockets: net.Socket[] = [];
  let backend: Backend;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshd-limits-'));
  after(async () => {
    for (const s of sockets) s.destroy();
    for (const c of children) c.kill('SIGKILL');
    await backend?.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const rssKiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

  it('keeps serving every ordinary request while 2,000 slow heads are held, with bounded memory, then cuts them all', async (t) => {
    backend = await new Backend('a').start();
    const port = await freePort();
    const admin = await freePort();
    const routes = path.join(dir, 'routes.yml');
    fs.writeFileSync(routes, stringify({ routes: [{ name: 'web', publish: port, mode: 'http', backends: [backend.address] }] }));
    const child = spawn(process.execPath, [MAIN, '--provider', 'file', '--routes', routes, '--listen-host', '127.0.0.1',
      '--admin-addr', `127.0.0.1:${admin}`, '--client-header-timeout', '6s', '--log-level', 'warn'], { stdio: 'ignore' });
    children.add(child);
    await waitFor(async () => (await get(port)).status === 200, 10_000, 'meshd serving');
    for (let i = 0; i < 20; i++) await get(port); // warm up before the baseline
    const rssBefore = rssKiB(child.pid!);

    // 2,000 clients that send a head slowly: one header line, then one byte per second.
    let answered408 = 0;
    let closed = 0;
    // Opened in batches, so the listen backlog is never what refuses them.
    for (let batch = 0; batch < 10; batch++) {
      await Promise.all(Array.from({ length: 200 }, () => new Promise<void>((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => {
          s.write('GET / HTTP/1.1\r\nHost: web\r\n');
          resolve();
        });
        s.setEncoding('latin1');
        s.on('data', (c: string) => { if (c.startsWith('HTTP/1.1 408')) answered408++; });
        s.on('error', () => resolve());
        s.once('close', () => closed++);
        sockets.push(s);
      })));
    }
    const drip = setInterval(() => { for (const s of sockets) if (!s.destroyed && s.writable) s.write('X'); }, 1000);
    try {
      await waitFor(async () => Number(/^meshd_client_connections (\d+)/m.exec((await get(admin, '/metrics')).body)?.[1]) >= 2000, 10_000, 'all slow clients connected');
      let ok = 0;
      for (let i = 0; i < 200; i++) if ((await get(port)).status === 200) ok++;
      assert.equal(ok, 200, 'every ordinary request succeeded');
      const grownKiB = rssKiB(child.pid!) - rssBefore;
      t.diagnostic(`meshd RSS ${rssBefore >> 10} MiB before, +${grownKiB >> 10} MiB with 2,000 slow clients held`);
      assert.ok(grownKiB < 2000 * 32, `RSS grew ${grownKiB} KiB for 2,000 held connections`);
      // None may outlive the header timeout, however slowly it keeps sending.
      await waitFor(() => closed === 2000, 15_000, 'every slow client cut');
      assert.ok(answered408 >= 1990, `${answered408} of 2000 slow clients answered 408`);
      assert.equal(await trips(admin, 'client-header-timeout'), 2000);
    } finally {
      clearInterval(drip);
    }
  });
});
