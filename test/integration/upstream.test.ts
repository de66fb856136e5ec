// meshd's own HTTP/1.1 client (src/proxy/upstream.ts), through meshd's L7 proxy,
// against backends that write exact bytes: every way a response can be framed,
// and the ways a backend can misbehave.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { TestMeshd } from '../support/meshd.js';
import { freePort } from '../support/net.js';

/** A backend that answers each request (by path) with the raw bytes the test chose. */
class RawBackend {
  readonly server: net.Server;
  readonly requests: string[] = [];
  port = 0;
  connections = 0;
  constructor(answer: (path: string, socket: net.Socket, head: string) => void) {
    this.server = net.createServer((socket) => {
      this.connections++;
      let buf = '';
      socket.on('data', (c) => {
        buf += c.toString('latin1');
        for (;;) {
          const end = buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          const head = buf.slice(0, end);
          const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
          const chunked = /\r\ntransfer-encoding: *chunked/i.test(head);
          let bodyEnd = end + 4 + length;
          if (chunked) {
            const term = buf.indexOf('\r\n0\r\n\r\n', end) >= 0 ? buf.indexOf('\r\n0\r\n\r\n', end) + 7 : (buf.startsWith('0\r\n\r\n', end + 4) ? end + 9 : -1);
            if (term < 0) return;
            bodyEnd = term;
          }
          if (buf.length < bodyEnd) return;
          const request = buf.slice(0, bodyEnd);
          buf = buf.slice(bodyEnd);
          this.requests.push(request);
          answer(head.split(' ')[1]!, socket, request);
        }
      });
      socket.on('error', () => {});
    });
  }
  async start(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }
}

function request(port: number, opts: { method?: string; path: string; headers?: http.OutgoingHttpHeaders; body?: string[]; agent?: http.Agent }): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: opts.method ?? 'GET', path: opts.path, headers: opts.headers, agent: opts.agent ?? false }, (res) => {
      let body = '';
      res.setEncoding('latin1');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    for (const part of opts.body ?? []) req.write(part);
    req.end();
  });
}

describe('upstream HTTP/1.1 client', () => {
  let m: TestMeshd;
  let port: number;
  const backend = new RawBackend((path, s, req) => {
    const send = (text: string) => s.write(text);
    switch (path) {
      case '/length': return send('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Kind: length\r\n\r\nhello');
      case '/chunked': return send('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n');
      case '/chunked-split':
        send('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r');
        setTimeout(() => send('\nabc\r\n'), 20);
        setTimeout(() => send('2\r\nde\r\n0\r\n\r\n'), 40);
        return;
      case '/head': return send('HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n');
      case '/nocontent': return send('HTTP/1.1 204 No Content\r\n\r\n');
      case '/notmodified': return send('HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n');
      case '/continue': return send('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      case '/until-close': s.end('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it'); return;
      case '/echo-body': {
        const body = req.slice(req.indexOf('\r\n\r\n') + 4);
        return send(`HTTP/1.1 200 OK\r\nContent-Length: ${Buffer.byteLength(body, 'latin1')}\r\n\r\n${body}`);
      }
      case '/garbage': return send('NOT HTTP AT ALL\r\n\r\n');
      case '/hop': return send('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: X-Private\r\nX-Private: secret\r\nKeep-Alive: timeout=5\r\n\r\nok');
      default: return send('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
    }
  });

  before(async () => {
    await backend.start();
    port = await freePort();
    m = await new TestMeshd().start([{ name: 'raw', publish: port, mode: 'http', backends: [`127.0.0.1:${backend.port}`] }], ['--health-interval', '5s']);
  });
  after(async () => {
    await m.stop();
    await new Promise((r) => backend.server.close(r));
  });

  it('frames responses by Content-Length, chunked (also split across reads), and connection close', async () => {
    const length = await request(port, { path: '/length' });
    assert.deepEqual([length.status, length.body, length.headers['x-kind']], [200, 'hello', 'length']);
    assert.equal((await request(port, { path: '/chunked' })).body, 'hello world');
    assert.equal((await request(port, { path: '/chunked-split' })).body, 'abcde');
    assert.equal((await request(port, { path: '/until-close' })).body, 'all of it');
  });

  it('reads no body after HEAD, 204 and 304, and skips 100 Continue', async () => {
    const head = await request(port, { method: 'HEAD', path: '/head' });
    assert.deepEqual([head.status, head.headers['content-length'], head.body], [200, '1234', '']);
    assert.equal((await request(port, { path: '/nocontent' })).status, 204);
    const nm = await request(port, { path: '/notmodified' });
    assert.deepEqual([nm.status, nm.headers.etag], [304, '"x"']);
    assert.deepEqual(await request(port, { path: '/continue' }).then((r) => [r.status, r.body]), [200, 'ok']);
    // After all of these, the keep-alive connections still line up requests and responses.
    for (let i = 0; i < 5; i++) assert.equal((await request(port, { path: '/length' })).body, 'hello');
  });

  it('passes request bodies, re-framing a chunked one', async () => {
    const fixed = await request(port, { method: 'POST', path: '/echo-body', headers: { 'content-length': '11' }, body: ['hello world'] });
    assert.equal(fixed.body, 'hello world');
    const chunked = await request(port, { method: 'POST', path: '/echo-body', body: ['abc', 'defgh'] });
    assert.equal(chunked.body, '3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n', 'sent upstream with chunked framing');
    assert.match(backend.requests.at(-1)!, /\r\ntransfer-encoding: chunked\r\n/);
  });

  it('drops hop-by-hop response headers, including those the Connection header names', async () => {
    const r = await request(port, { path: '/hop' });
    assert.equal(r.body, 'ok');
    assert.equal(r.headers['x-private'], undefined);
    assert.notEqual(r.headers['keep-alive'], 'timeout=5');
  });

  it('answers 502 when the backend does not speak HTTP, and keeps serving', async () => {
    const r = await request(port, { path: '/garbage' });
    assert.equal(r.status, 502);
    assert.equal(r.headers['x-meshd-error'], 'BACKEND_FAILED');
    assert.equal((await request(port, { path: '/length' })).body, 'hello');
  });

  it('sends a request body whole to the second backend when the first refuses the connection', async () => {
    const closed = await freePort();
    const p2 = await freePort();
    await m.update([
      { name: 'raw', publish: port, mode: 'http', backends: [`127.0.0.1:${backend.port}`] },
      { name: 'retry', publish: p2, mode: 'http', backends: [`127.0.0.1:${closed}`, `127.0.0.1:${backend.port}`] },
    ]);
    const bodies: string[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await request(p2, { method: 'POST', path: '/echo-body', headers: { 'content-length': '10' }, body: ['0123', '456789'] });
      bodies.push(`${r.status} ${r.body}`);
    }
    assert.deepEqual(bodies, Array(4).fill('200 0123456789'));
    assert.ok(m.meshd.stats.retries >= 1, 'the refused connect was retried');
  });

  it('reuses upstream connections across requests', async () => {
    const before = backend.connections;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    for (let i = 0; i < 20; i++) assert.equal((await request(port, { path: '/length', agent })).body, 'hello');
    agent.destroy();
    assert.ok(backend.connections - before <= 1, `opened ${backend.connections - before} connections for 20 requests`);
  });
});
