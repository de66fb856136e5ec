// Routing and balancing through a real meshd on loopback: path prefixes with
// strip-prefix, a host no route claims, sticky cookies honoured by a second
// meshd instance, least-conn against a slow backend, and source-hash for HTTP
// and TCP clients coming from different loopback addresses.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { TestMeshd, type FileRoute } from '../support/meshd.js';
import { Backend, freePort, get } from '../support/net.js';

/** Answers with its name, the target it received and the prefix meshd says it stripped; `delay` ms late. */
function echo(name: string, delay = 0): Backend {
  return new Backend(name, (req, res) => {
    setTimeout(() => res.end(JSON.stringify({ name, url: req.url, prefix: req.headers['x-forwarded-prefix'] ?? null })), delay);
  });
}

function getFrom(localAddress: string, port: number, headers: http.OutgoingHttpHeaders = {}): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', headers, agent: false, localAddress }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers }));
    });
    req.setTimeout(5000, () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

const nameOf = (body: string) => (JSON.parse(body) as { name: string }).name;

describe('routing and balancing', () => {
  const site = echo('site');
  const api = echo('api');
  const assets = echo('assets');
  const sticky = [echo('s1'), echo('s2'), echo('s3')];
  const slow = echo('slow', 300);
  const fast = echo('fast');
  const hashed = [echo('h1'), echo('h2'), echo('h3')];
  const tcpNames = ['t1', 't2', 't3'];
  const tcp = tcpNames.map((n) => net.createServer((s) => {
    s.on('error', () => undefined);
    s.end(n);
  }));
  const tcpPorts: number[] = [];
  let m: TestMeshd;
  let twin: TestMeshd;
  const port = { web: 0, sticky: 0, twin: 0, least: 0, hash: 0, tcp: 0 };
  let routes: FileRoute[];

  before(async () => {
    for (const b of [site, api, assets, ...sticky, slow, fast, ...hashed]) await b.start();
    for (const s of tcp) {
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
      tcpPorts.push((s.address() as net.AddressInfo).port);
    }
    for (const k of Object.keys(port) as (keyof typeof port)[]) port[k] = await freePort();
    routes = [
      { name: 'site', publish: port.web, mode: 'http', hosts: ['a.test'], backends: [site.address] },
      { name: 'api', publish: port.web, mode: 'http', hosts: ['a.test'], paths: ['/api'], stripPrefix: true, backends: [api.address] },
      { name: 'assets', publish: port.web, mode: 'http', paths: ['/static'], backends: [assets.address] },
      { name: 'sticky', publish: port.sticky, mode: 'http', sticky: 'cookie:SID', backends: sticky.map((b) => b.address) },
      { name: 'least', publish: port.least, mode: 'http', lb: 'least-conn', backends: [slow.address, fast.address] },
      { name: 'hash', publish: port.hash, mode: 'http', lb: 'source-hash', backends: hashed.map((b) => b.address) },
      { name: 'tcp', publish: port.tcp, mode: 'tcp', lb: 'source-hash', backends: tcpPorts.map((p) => `127.0.0.1:${p}`) },
    ];
    m = await new TestMeshd().start(routes);
  });

  after(async () => {
    await m?.stop();
    await twin?.stop();
    for (const b of [site, api, assets, ...sticky, slow, fast, ...hashed]) await b.kill().catch(() => undefined);
    for (const s of tcp) s.close();
  });

  it('routes by host and longest path prefix, strips the prefix, and answers 404 where no route claims the request', async () => {
    const at = async (host: string, path: string) => {
      const r = await get(port.web, path, { host });
      return r.status === 200 ? JSON.parse(r.body) as { name: string; url: string; prefix: string | null } : r.status;
    };
    assert.deepEqual(await at('a.test', '/'), { name: 'site', url: '/', prefix: null });
    assert.deepEqual(await at('a.test', '/api/users?id=7'), { name: 'api', url: '/users?id=7', prefix: '/api' });
    assert.deepEqual(await at('a.test', '/api'), { name: 'api', url: '/', prefix: '/api' });
    assert.deepEqual(await at('a.test', '/apiary'), { name: 'site', url: '/apiary', prefix: null });
    assert.deepEqual(await at('other.test', '/static/app.js'), { name: 'assets', url: '/static/app.js', prefix: null });
    assert.equal(await at('other.test', '/'), 404);
    const r = await get(port.web, '/', { host: 'other.test' });
    assert.match(r.body, /no route/i);
  });

  it('keeps a client on its backend by cookie, on this meshd and on another one, and moves it when that backend dies', async () => {
    // Another instance, as on another node: the same backends, so the same ids (its own port, on one machine).
    twin = await new TestMeshd().start([{ ...routes.find((r) => r.name === 'sticky')!, publish: port.twin }]);
    const first = await get(port.sticky, '/');
    const cookie = /^SID=([^;]+); Path=\/; HttpOnly; SameSite=Lax$/.exec(String(first.headers['set-cookie']));
    assert.ok(cookie, `set-cookie: ${first.headers['set-cookie']}`);
    const owner = nameOf(first.body);
    for (let i = 0; i < 6; i++) {
      const r = await get(i % 2 ? port.twin : port.sticky, '/', { cookie: `other=1; SID=${cookie[1]}` });
      assert.equal(nameOf(r.body), owner, 'the cookie picks its backend on either instance, not the round-robin');
      assert.equal(r.headers['set-cookie'], undefined, 'a client on its backend gets no new cookie');
    }

    await sticky.find((b) => b.name === owner)!.kill();
    const moved = await get(port.sticky, '/', { cookie: `SID=${cookie[1]}` });
    assert.equal(moved.status, 200);
    assert.notEqual(nameOf(moved.body), owner);
    const next = /^SID=([^;]+);/.exec(String(moved.headers['set-cookie']));
    assert.ok(next && next[1] !== cookie[1], 'a new cookie names the new backend');
    await twin.probed();
    for (const p of [port.sticky, port.twin]) assert.equal(nameOf((await get(p, '/', { cookie: `SID=${next[1]}` })).body), nameOf(moved.body));
  });

  it('least-conn sends most requests to the fast backend while the slow one holds its requests', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    const names: string[] = [];
    await Promise.all(Array.from({ length: 8 }, async () => {
      for (let i = 0; i < 10; i++) names.push(nameOf((await get(port.least, '/', {}, agent)).body));
    }));
    agent.destroy();
    const toSlow = names.filter((n) => n === 'slow').length;
    // Round-robin would give the slow one half (40); least-conn gives it only what arrives while it has fewer in flight.
    assert.ok(toSlow < 20, `${toSlow} of ${names.length} went to the slow backend`);
  });

  it('source-hash keeps each client address on one backend, for HTTP and for TCP', async () => {
    const sources = Array.from({ length: 8 }, (_, i) => `127.0.0.${i + 2}`);
    const httpSeen = new Map<string, Set<string>>();
    const tcpSeen = new Map<string, Set<string>>();
    for (let round = 0; round < 3; round++) {
      for (const src of sources) {
        const r = await getFrom(src, port.hash);
        (httpSeen.get(src) ?? httpSeen.set(src, new Set()).get(src)!).add(nameOf(r.body));
        const name = await new Promise<string>((resolve, reject) => {
          const s = net.connect({ host: '127.0.0.1', port: port.tcp, localAddress: src });
          let data = '';
          s.on('data', (c) => (data += c));
          s.on('end', () => resolve(data));
          s.on('error', reject);
        });
        (tcpSeen.get(src) ?? tcpSeen.set(src, new Set()).get(src)!).add(name);
      }
    }
    for (const seen of [httpSeen, tcpSeen]) {
      for (const [src, names] of seen) assert.equal(names.size, 1, `${src} went to ${[...names]}`);
      assert.ok(new Set([...seen.values()].map((s) => [...s][0])).size >= 2, 'different clients reach different backends');
    }
  });
});
