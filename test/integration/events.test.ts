// The dashboard's event stream (/api/events) on a real meshd: one snapshot per
// tick shared by every open stream, changes pushed at once, rates from counter
// deltas, closed streams dropped, and the admin token (header or session cookie).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EventFeed } from '../../src/admin/events.js';
import type { DashboardView, SnapshotEvent } from '../../src/admin/live-view.js';
import { TestMeshd } from '../support/meshd.js';
import { Backend, freePort, get, waitFor } from '../support/net.js';
import { SseClient } from '../support/sse.js';

const metric = async (port: number, name: string, headers: http.OutgoingHttpHeaders = {}) => {
  const body = (await get(port, '/metrics', headers)).body;
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(body);
  assert.ok(m, `${name} in /metrics`);
  return Number(m[1]);
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const views = (c: SseClient) => c.snapshots<SnapshotEvent>().map((s) => s.view);

describe('dashboard events', () => {
  let m: TestMeshd;
  let a: Backend;
  let b: Backend;
  let port: number;
  const clients: SseClient[] = [];

  before(async () => {
    port = await freePort();
    a = await new Backend('a').start();
    b = await new Backend('b').start();
    m = await new TestMeshd().start([{ name: 'web', publish: port, mode: 'http', backends: [a.address], health: { path: '/health' } }]);
    await waitFor(() => [...m.meshd.table.allBackends()].every((x) => x.eligible), 5000, 'backend healthy');
  });
  after(async () => {
    for (const c of clients) c.close();
    await m?.stop();
    await a?.kill();
    await b?.kill();
  });

  it('builds one snapshot per tick for 50 streams and sends each the same event', async () => {
    for (let i = 0; i < 50; i++) clients.push(await SseClient.open(m.adminPort));
    assert.ok(clients.every((c) => c.status === 200 && /^text\/event-stream/.test(String(c.res.headers['content-type']))));
    await waitFor(() => clients.every((c) => c.snapshots().length > 0), 5000, 'a first snapshot on every stream');
    assert.equal(await metric(m.adminPort, 'meshd_dashboard_streams'), 50);

    // Traffic makes every tick's rates differ, so every tick's snapshot is sent.
    const built = await metric(m.adminPort, 'meshd_dashboard_snapshots_total');
    const started = Date.now();
    while (Date.now() - started < 3000) {
      assert.equal((await get(port, '/')).status, 200);
      await sleep(50);
    }
    const builds = (await metric(m.adminPort, 'meshd_dashboard_snapshots_total')) - built;
    assert.ok(builds >= 2 && builds <= 5, `${builds} snapshots built in 3 s for 50 streams: one per tick expected`);

    // Every stream got the same events, byte for byte.
    await sleep(100);
    const reference = new Map(clients[0]!.events.map((e) => [e.id, e.data]));
    const allOpen = Math.max(...clients.map((c) => Number(c.events[0]!.id)));
    const sent = clients[0]!.events.filter((e) => Number(e.id) > allOpen);
    assert.ok(sent.length >= 2, `${sent.length} events after the first`);
    for (const c of clients) {
      for (const e of c.events) if (e.event === 'snapshot' && reference.has(e.id)) assert.equal(e.data, reference.get(e.id));
      assert.ok(sent.every((e) => c.events.some((x) => x.id === e.id)), 'no stream missed an event');
    }

    // Rates come from counter deltas: about 15 requests a second were sent.
    const last = views(clients[0]!).at(-1)!;
    const web = last.routes[0]!;
    assert.ok(web.rate !== null && web.rate > 3 && web.rate < 25, `route rate ${web.rate}`);
    assert.equal(web.backends[0]!.rate, web.rate);
    assert.equal(web.errorRate, 0);
  });

  it('pushes a table change at once, not at the next tick', async (t) => {
    const c = clients[0]!;
    const before = m.meshd.table.version;
    let appliedAt = 0;
    m.meshd.table.once('applied', () => (appliedAt = Date.now()));
    m.writeRoutes([{ name: 'web', publish: port, mode: 'http', backends: [a.address, b.address], health: { path: '/health' } }]);
    const seen = await waitFor(() => views(c).find((v) => v.version > before), 5000, 'the new table on the stream');
    const lag = Date.now() - appliedAt;
    assert.equal(seen.routes[0]!.backends.length, 2);
    assert.ok(lag < 300, `the new table reached the stream ${lag} ms after it was applied`);
    t.diagnostic(`new table on the stream ${lag} ms after it was applied`);
    await waitFor(() => views(c).at(-1)!.routes[0]!.backends.every((x) => x.state === 'active'), 3000, 'the new backend active on the stream');

    // A health change too: from the probe that takes the backend out to the stream.
    let outAt = 0;
    const onHealth = (x: { host: string; port: number; eligible: boolean }) => { if (!outAt && `${x.host}:${x.port}` === b.address && !x.eligible) outAt = Date.now(); };
    m.meshd.table.on('health', onHealth);
    t.after(() => m.meshd.table.off('health', onHealth));
    await b.kill();
    await waitFor(() => views(c).at(-1)!.routes[0]!.backends.find((x) => x.address === b.address)?.state === 'out', 5000, 'the dead backend out on the stream');
    const healthLag = Date.now() - outAt;
    t.diagnostic(`backend out on the stream ${healthLag} ms after the probe took it out`);
    assert.ok(healthLag < 300, `${healthLag} ms`);
  });

  it('drops closed streams and stops building when nobody watches', async () => {
    for (const c of clients.splice(0)) c.close();
    await waitFor(async () => (await metric(m.adminPort, 'meshd_dashboard_streams')) === 0, 3000, 'streams removed');
    const built = await metric(m.adminPort, 'meshd_dashboard_snapshots_total');
    await sleep(1500);
    assert.equal(await metric(m.adminPort, 'meshd_dashboard_snapshots_total'), built, 'no snapshot built without a stream');
  });
});

describe('dashboard events with --admin-token-file', () => {
  const TOKEN = '6f1d0c9a7e3b5d42';
  let m: TestMeshd;

  before(async () => {
    m = new TestMeshd();
    const file = path.join(m.dir, 'admin-token');
    fs.writeFileSync(file, `${TOKEN}\n`);
    await m.start([], ['--admin-token-file', file]);
  });
  after(async () => {
    await m?.stop();
  });

  const post = (p: string, body: string) => new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: m.adminPort, path: p, method: 'POST', agent: false, headers: { 'content-type': 'application/x-www-form-urlencoded' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });

  it('refuses a stream without the token, and in the query string', async () => {
    for (const [headers, p] of [[{}, '/api/events'], [{}, `/api/events?token=${TOKEN}`], [{ cookie: `meshd_session=${TOKEN}` }, '/api/events']] as const) {
      const c = await SseClient.open(m.adminPort, headers, p);
      assert.equal(c.status, 401, `${p} ${JSON.stringify(headers)}`);
      c.close();
    }
    const page = await get(m.adminPort, '/');
    assert.equal(page.status, 200);
    assert.match(page.body, /<form method="post" action="\/login"/);
    assert.doesNotMatch(page.body, /\/ui\/app\.js/, 'the sign-in page runs no script');
    assert.equal((await get(m.adminPort, '/healthz')).status, 200);
  });

  it('streams with the bearer token', async () => {
    const c = await SseClient.open(m.adminPort, { authorization: `Bearer ${TOKEN}` });
    try {
      assert.equal(c.status, 200);
      await waitFor(() => c.snapshots().length, 3000, 'a snapshot');
      assert.equal((c.snapshots<SnapshotEvent>()[0]!.view as DashboardView).auth, true);
    } finally {
      c.close();
    }
  });

  it('signs a browser in with an HttpOnly, SameSite=Strict cookie that opens the stream', async () => {
    const wrong = await post('/login', `token=${TOKEN}x`);
    assert.equal(wrong.status, 401);
    assert.equal(wrong.headers['set-cookie'], undefined);
    assert.match(wrong.body, /not the one in --admin-token-file/);

    const ok = await post('/login', `token=${encodeURIComponent(` ${TOKEN} `)}`);
    assert.equal(ok.status, 303);
    assert.equal(ok.headers.location, '/');
    const set = ok.headers['set-cookie']?.[0] ?? '';
    assert.match(set, /^meshd_session=[\w-]+; Path=\/; HttpOnly; SameSite=Strict$/);
    assert.ok(!set.includes(TOKEN), 'the cookie is not the token itself');
    const cookie = set.split(';')[0]!;

    const page = await get(m.adminPort, '/', { cookie });
    assert.equal(page.status, 200);
    assert.match(page.body, /<script type="module" src="\/ui\/app\.js">/);
    assert.match(String(page.headers['content-security-policy']), /default-src 'none'.*frame-ancestors 'none'/);
    const c = await SseClient.open(m.adminPort, { cookie });
    try {
      assert.equal(c.status, 200);
      await waitFor(() => c.snapshots().length, 3000, 'a snapshot');
    } finally {
      c.close();
    }
    assert.equal((await get(m.adminPort, '/api/routes', { cookie })).status, 200);

    const out = await post('/logout', '');
    assert.equal(out.status, 303);
    assert.match(out.headers['set-cookie']?.[0] ?? '', /^meshd_session=; .*Max-Age=0/);
    assert.equal(await metric(m.adminPort, 'meshd_admin_unauthorized_total', { cookie }), 4, 'three refused streams and one wrong sign-in');
  });
});

describe('EventFeed', () => {
  let server: http.Server;
  let feed: EventFeed;
  let port: number;

  const serve = async (f: EventFeed) => {
    feed = f;
    server = http.createServer((_req, res) => feed.add(res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as net.AddressInfo).port;
  };
  const stop = async () => {
    feed?.close();
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r));
  };

  it('sends pings between unchanged snapshots', async (t) => {
    t.after(stop);
    await serve(new EventFeed({ view: () => '{}', sample: () => {}, idle: () => {}, tickMs: 20, heartbeatMs: 100 }));
    const c = await SseClient.open(port);
    await waitFor(() => c.events.filter((e) => e.event === 'ping').length >= 3, 2000, 'three pings');
    assert.equal(c.snapshots().length, 1, 'an unchanged view is not sent again');
    c.close();
  });

  it('closes a stream whose reader stopped reading', async (t) => {
    t.after(stop);
    let n = 0;
    const big = 'x'.repeat(256 * 1024);
    await serve(new EventFeed({ view: () => JSON.stringify({ n: n++, big }), sample: () => {}, idle: () => {}, tickMs: 10, maxBufferedBytes: 64 * 1024 }));
    const reader = await SseClient.open(port);
    // A raw socket that sends a request and never reads the answer.
    const stalled = net.connect(port, '127.0.0.1');
    stalled.write('GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n');
    stalled.pause();
    t.after(() => stalled.destroy());
    await waitFor(() => feed.clients === 2, 2000, 'both streams open');
    await waitFor(() => feed.clients === 1, 10_000, 'the stalled stream closed');
    assert.equal(reader.ended, false, 'the reading stream stays open');
    reader.close();
  });
});
