// L7 through a real meshd (file provider) in front of real backends on loopback.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import { TestMeshd } from '../support/meshd.js';
import { Backend, freePort, get, waitFor } from '../support/net.js';

describe('L7 proxy', () => {
  let port: number;
  let m: TestMeshd;
  const backends: Backend[] = [];
  const route = () => ({ name: 'web', publish: port, mode: 'http' as const, backends: backends.map((b) => b.address), health: { path: '/health' } });

  before(async () => {
    port = await freePort();
    for (const name of ['a', 'b', 'c']) backends.push(await new Backend(name).start());
    m = await new TestMeshd().start([route()]);
  });
  after(async () => {
    await m.stop();
    for (const b of backends) await b.kill();
  });

  it('alternates over the backends in round-robin order', async () => {
    const names: string[] = [];
    for (let i = 0; i < 9; i++) names.push((await get(port)).body);
    const first = names.slice(0, 3);
    assert.deepEqual([...first].sort(), ['a', 'b', 'c']);
    assert.deepEqual(names, [...first, ...first, ...first]);
  });

  it('sets X-Forwarded-* and drops hop-by-hop headers', async () => {
    const r = await get(port, '/x', { 'x-forwarded-for': '203.0.113.9', connection: 'x-secret', 'x-secret': '1', 'keep-alive': 'timeout=5', te: 'trailers' });
    assert.equal(r.status, 200);
    const seen = backends.find((b) => b.name === r.body)!.lastHeaders;
    assert.equal(seen['x-forwarded-for'], '203.0.113.9, 127.0.0.1');
    assert.equal(seen['x-forwarded-proto'], 'http');
    assert.equal(seen['x-forwarded-host'], `127.0.0.1:${port}`);
    assert.equal(seen.host, `127.0.0.1:${port}`);
    assert.equal(seen['x-secret'], undefined);
    assert.equal(seen['keep-alive'], undefined);
    assert.equal(seen.te, undefined);
  });

  it('passes request bodies and streams large responses', async () => {
    const big = new Backend('big', (req, res) => {
      let n = 0;
      req.on('data', (c: Buffer) => (n += c.length));
      req.on('end', () => {
        res.setHeader('x-received', String(n));
        res.end(Buffer.alloc(1 << 20, 'x'));
      });
    });
    await big.start();
    const p2 = await freePort();
    await m.update([route(), { name: 'big', publish: p2, mode: 'http', backends: [big.address] }]);
    const reply = await new Promise<{ received: string; length: number }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: p2, method: 'POST', path: '/upload' }, (res) => {
        let length = 0;
        res.on('data', (c: Buffer) => (length += c.length));
        res.on('end', () => resolve({ received: String(res.headers['x-received']), length }));
      });
      req.on('error', reject);
      req.end(Buffer.alloc(300_000, 'y'));
    });
    assert.deepEqual(reply, { received: '300000', length: 1 << 20 });
    await m.update([route()]);
    await big.kill();
  });

  it('keeps every request succeeding when a backend dies mid-run, ejects it, and takes it back once it answers', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    const victim = backends[1]!;
    const statuses: number[] = [];
    let sent = 0;
    const worker = async () => {
      while (sent < 300) {
        sent++;
        if (sent === 100) await victim.kill();
        statuses.push((await get(port, '/', {}, agent)).status);
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    agent.destroy();
    assert.equal(statuses.length, 300);
    assert.deepEqual(statuses.filter((s) => s !== 200), [], 'no request failed');
    assert.ok(m.meshd.stats.retries >= 1, 'failed attempts were retried on another backend');
    const b = m.backend(port, victim.address)!;
    assert.equal(b.eligible, false, 'the dead backend is out of rotation');

    await victim.start(victim.port);
    await waitFor(() => b.eligible, 5000, 'backend back in rotation after passing probes');
    const names = new Set<string>();
    for (let i = 0; i < 6; i++) names.add((await get(port)).body);
    assert.ok(names.has(victim.name), 'it gets traffic again');
  });

  it('follows routes file changes without dropping in-flight requests', async () => {
    const slow = new Backend('slow', (req, res) => (req.url === '/health' ? res.end('ok') : setTimeout(() => res.end('slow'), 600)));
    await slow.start();
    await m.update([{ ...route(), backends: [slow.address] }]);
    const inFlight = get(port);
    await new Promise((r) => setTimeout(r, 100));
    await m.update([route()]);
    const names = new Set<string>();
    for (let i = 0; i < 6; i++) names.add((await get(port)).body);
    assert.deepEqual([...names].sort(), ['a', 'b', 'c'], 'new requests go to the new set only');
    assert.deepEqual(await inFlight.then((r) => [r.status, r.body]), [200, 'slow'], 'the in-flight request finished');
    await slow.kill();
  });

  it('routes by Host header, with a default route for other hosts', async () => {
    const counter = await new Backend('counter').start();
    await m.update([route(), { name: 'counter', publish: port, mode: 'http', hosts: ['counter.local.dev'], backends: [counter.address] }]);
    assert.equal((await get(port, '/', { host: 'counter.local.dev' })).body, 'counter');
    assert.equal((await get(port, '/', { host: 'COUNTER.local.dev:80' })).body, 'counter');
    assert.notEqual((await get(port, '/', { host: 'other.dev' })).body, 'counter');
    await m.update([route()]);
    await counter.kill();
  });

  it('passes WebSocket upgrades through', async () => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await new Promise((r) => wss.once('listening', r));
    let forwardedFor: string | undefined;
    wss.on('connection', (ws, req) => {
      forwardedFor = req.headers['x-forwarded-for'] as string;
      ws.on('message', (data) => ws.send(`echo:${data}`));
    });
    const wsPort = await freePort();
    await m.update([route(), { name: 'ws', publish: wsPort, mode: 'http', backends: [`127.0.0.1:${(wss.address() as net.AddressInfo).port}`] }]);
    const ws = new WebSocket(`ws://127.0.0.1:${wsPort}/chat`);
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    const replies: string[] = [];
    for (const msg of ['one', 'two']) {
      ws.send(msg);
      replies.push(String(await new Promise((r) => ws.once('message', r))));
    }
    ws.close();
    assert.deepEqual(replies, ['echo:one', 'echo:two']);
    assert.equal(forwardedFor, '127.0.0.1');
    await m.update([route()]);
    await new Promise((r) => wss.close(r));
  });

  it('answers 504 when a backend does not answer in time, and 502 when it fails mid-request', async () => {
    const hang = new Backend('hang', (req) => {
      if (req.method === 'POST') req.socket.destroy();
    });
    await hang.start();
    const t = await new TestMeshd().start([{ name: 'hang', publish: await freePort(), mode: 'http', backends: [hang.address] }], ['--response-timeout', '300ms', '--health-interval', '5s']);
    const p = t.meshd.table.routes.values().next().value!.spec.port;
    const slow = await get(p);
    assert.equal(slow.status, 504);
    assert.equal(slow.headers['x-meshd-error'], 'BACKEND_TIMEOUT');
    const failed = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: p, method: 'POST' }, (res) => resolve(res.statusCode!));
      req.on('error', reject);
      req.end('body');
    });
    assert.equal(failed, 502);
    await t.stop();
    await hang.kill();
  });

  it('answers malformed HTTP with 400 and goes on serving other clients', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    assert.equal((await get(port, '/', {}, agent)).status, 200);
    const raw = await new Promise<string>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => s.write('GARBAGE \x00\x01 nonsense\r\n\r\n'));
      let text = '';
      s.on('data', (c) => (text += c));
      s.on('close', () => resolve(text));
    });
    assert.match(raw, /^HTTP\/1\.1 400 Bad Request/);
    assert.equal((await get(port, '/', {}, agent)).status, 200, 'the keep-alive client is undisturbed');
    assert.ok((m.meshd.stats.answered.get('BAD_REQUEST') ?? 0) >= 1);
    agent.destroy();
  });

  it('answers 503 with a clear body when no backend is healthy, and recovers', async () => {
    for (const b of backends) await b.kill();
    await waitFor(async () => (await get(port)).status === 503, 5000, '503');
    const r = await get(port);
    assert.equal(r.status, 503);
    assert.match(r.body, /no healthy backend/);
    assert.equal(r.headers['x-meshd-error'], 'NO_HEALTHY_BACKEND');
    for (const b of backends) await b.start(b.port);
    await waitFor(async () => (await get(port)).status === 200, 5000, 'recovery');
  });
});
