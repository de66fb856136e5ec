// https ports through a real meshd on loopback, with certificates made by
// openssl at test time: HTTP/1.1 over TLS, SNI picks (openssl s_client),
// protocol floor, session resumption, certificates replaced on disk, WebSocket,
// and the TLS handshake limits.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { WebSocket, WebSocketServer } from 'ws';
import { TestCA, writeAtomic, type Pem } from '../support/certs.js';
import { TestMeshd } from '../support/meshd.js';
import { Backend, freePort, get, waitFor, type Reply } from '../support/net.js';

/**
 * Runs openssl s_client against a port on loopback and sends one HTTP/1.0
 * request, so it stays until meshd answers and closes (and a TLS 1.3 session
 * ticket has arrived); resolves with everything it printed.
 */
function sClient(port: number, args: string[]): Promise<string> {
  return new Promise((resolve) => {
    const child = execFile('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-ign_eof', ...args], { timeout: 10_000 }, (_err, stdout, stderr) => resolve(stdout + stderr));
    child.stdin!.end('GET / HTTP/1.0\r\n\r\n');
  });
}

/** One counter from /metrics. */
async function metric(adminPort: number, name: string, labels: string): Promise<number> {
  const text = (await get(adminPort, '/metrics')).body;
  const m = new RegExp(`^${name}${labels ? `\\{${labels}\\}` : ''} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

/** GET over TLS with the test CA, SNI `host` and Host `host:port`. */
function httpsGet(port: number, host: string, ca: string, urlPath = '/'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path: urlPath, servername: host, ca, agent: false, headers: { host: `${host}:${port}` } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers }));
    });
    req.setTimeout(5000, () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
  });
}

/** The SHA-256 fingerprint of the certificate meshd serves for `servername`. */
function servedFingerprint(port: number, servername?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ...(servername ? { servername } : {}), rejectUnauthorized: false }, () => {
      resolve(s.getPeerCertificate().fingerprint256);
      s.destroy();
    });
    s.on('error', reject);
  });
}

const fingerprint = (pem: Pem) => new crypto.X509Certificate(pem.cert).fingerprint256;

describe('https ports', () => {
  let ca: TestCA;
  let a: Pem, wild: Pem, def: Pem, fromFile: Pem;
  let m: TestMeshd;
  let tlsDir: string;
  let port: number;
  const backend = new Backend('web');

  before(async () => {
    ca = new TestCA();
    a = ca.issue(['a.test']);
    wild = ca.issue(['*.w.test']);
    def = ca.issue(['d.test']);
    fromFile = ca.issue(['r.test']);
    await backend.start();
    port = await freePort();
    m = new TestMeshd();
    tlsDir = path.join(m.dir, 'tls');
    fs.mkdirSync(tlsDir);
    for (const [name, pem] of [['a', a], ['w', wild], ['d', def]] as const) {
      writeAtomic(path.join(tlsDir, `${name}.crt`), pem.cert);
      writeAtomic(path.join(tlsDir, `${name}.key`), pem.key);
    }
    fs.writeFileSync(path.join(m.dir, 'r.pem'), fromFile.cert + fromFile.key);
    m.extra = { tls: { certificates: [{ cert: 'r.pem', key: 'r.pem' }] } };
    await m.start([{ name: 'web', publish: port, mode: 'https', backends: [backend.address] }], ['--tls-default-cert', 'd', '--client-header-timeout', '1s']);
  });
  after(async () => {
    await m?.stop();
    await backend.kill();
    ca.remove();
  });

  it('proxies HTTP/1.1 over TLS, with X-Forwarded-Proto https', async () => {
    const r = await httpsGet(port, 'a.test', ca.pem, '/p?q=1');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'web');
    assert.equal(backend.lastHeaders['x-forwarded-proto'], 'https');
    assert.equal(backend.lastHeaders['x-forwarded-for'], '127.0.0.1');
    assert.equal(backend.lastHeaders.host, `a.test:${port}`);
    assert.equal((await httpsGet(port, 'r.test', ca.pem)).status, 200, 'a certificate from the routes file serves its name');
  });

  it('picks the certificate by SNI: exact, wildcard, default (openssl s_client)', async () => {
    const subject = async (args: string[]) => /subject=CN = (\S+)/.exec(await sClient(port, args))?.[1];
    assert.equal(await subject(['-servername', 'a.test']), 'a.test');
    assert.equal(await subject(['-servername', 'x.w.test']), '*.w.test');
    assert.equal(await subject(['-servername', 'y.x.w.test']), 'd.test', 'a wildcard covers one label only');
    assert.equal(await subject(['-servername', 'unknown.test']), 'd.test');
    assert.equal(await subject(['-noservername']), 'd.test', 'no SNI: the default');
  });

  it('refuses TLS 1.1 and suites outside Mozilla intermediate, and counts the failures', async () => {
    const before = await metric(m.adminPort, 'meshd_tls_handshake_failures_total', 'reason="protocol-version"');
    const out = await sClient(port, ['-servername', 'a.test', '-tls1_1', '-cipher', 'DEFAULT:@SECLEVEL=0']);
    assert.match(out, /alert protocol version/);
    assert.doesNotMatch(out, /Cipher is ECDHE/);
    await waitFor(async () => (await metric(m.adminPort, 'meshd_tls_handshake_failures_total', 'reason="protocol-version"')) === before + 1, 2000, 'failure counted');
    assert.match(await sClient(port, ['-servername', 'a.test', '-tls1_2']), /New, TLSv1\.2, Cipher is ECDHE-ECDSA-AES(128|256)-GCM-SHA(256|384)/);
    assert.match(await sClient(port, ['-servername', 'a.test', '-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-SHA']), /alert handshake failure/, 'a CBC suite outside the intermediate list is refused');
  });

  it('resumes sessions (TLS 1.3 and 1.2) for a name that is not the default', async () => {
    for (const version of ['-tls1_3', '-tls1_2']) {
      const file = path.join(m.dir, `session${version}`);
      const first = await sClient(port, ['-servername', 'a.test', version, '-sess_out', file]);
      assert.match(first, /^New, TLSv1\.[23]/m);
      const again = await sClient(port, ['-servername', 'a.test', version, '-sess_in', file]);
      assert.match(again, /^Reused, TLSv1\.[23]/m, `${version} session reused`);
    }
  });

  it('passes WebSocket upgrades over TLS', async () => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await new Promise((r) => wss.once('listening', r));
    let proto: string | undefined;
    wss.on('connection', (ws, req) => {
      proto = req.headers['x-forwarded-proto'] as string;
      ws.on('message', (data) => ws.send(`echo:${data}`));
    });
    const wsPort = await freePort();
    await m.update([{ name: 'web', publish: port, mode: 'https', backends: [backend.address] },
      { name: 'ws', publish: wsPort, mode: 'https', backends: [`127.0.0.1:${(wss.address() as net.AddressInfo).port}`] }]);
    // ws hands `servername` to tls.connect; its types do not list it.
    const ws = new WebSocket(`wss://127.0.0.1:${wsPort}/chat`, { ca: ca.pem, headers: { host: `a.test:${wsPort}` }, ...{ servername: 'a.test' } });
    try {
      await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
      ws.send('one');
      assert.equal(String(await new Promise((r) => ws.once('message', r))), 'echo:one');
      assert.equal(proto, 'https');
    } finally {
      ws.terminate();
      await new Promise((r) => wss.close(r));
      await m.update([{ name: 'web', publish: port, mode: 'https', backends: [backend.address] }]);
    }
  });

  it('serves a certificate replaced on disk without restart; a bad file keeps the old one and shows a problem', async () => {
    assert.equal(await servedFingerprint(port, 'a.test'), fingerprint(a));
    const renewed = ca.issue(['a.test']);
    writeAtomic(path.join(tlsDir, 'a.key'), renewed.key);
    writeAtomic(path.join(tlsDir, 'a.crt'), renewed.cert);
    await waitFor(async () => (await servedFingerprint(port, 'a.test')) === fingerprint(renewed), 5000, 'renewed certificate served');
    assert.equal((await httpsGet(port, 'a.test', ca.pem)).status, 200);

    const errors = m.meshd.certs.errors;
    writeAtomic(path.join(tlsDir, 'a.crt'), wild.cert);
    await waitFor(() => m.meshd.certs.errors > errors, 5000, 'bad file read');
    assert.equal(await servedFingerprint(port, 'a.test'), fingerprint(renewed), 'the previous certificate keeps serving');
    const view = JSON.parse((await get(m.adminPort, '/api/routes')).body);
    const entry = view.tls.certificates.find((c: { source: string }) => c.source.endsWith('a.crt'));
    assert.deepEqual([entry.serving, entry.names, entry.problems], [true, ['a.test'], ['the private key does not match the certificate']]);
    assert.ok(!JSON.stringify(view).includes('PRIVATE KEY'));
    assert.equal(await metric(m.adminPort, 'meshd_tls_certificate_errors_total', ''), m.meshd.certs.errors);
    writeAtomic(path.join(tlsDir, 'a.crt'), renewed.cert);
    await waitFor(() => m.meshd.certs.view().certificates.find((c) => c.source.endsWith('a.crt'))!.problems.length === 0, 5000, 'problem cleared');
  });

  it('redirects plain HTTP with 308 to https, and adds HSTS on https answers (HTTP/1.1 and HTTP/2)', async () => {
    const plain = await freePort();
    const plain443 = await freePort();
    await m.update([
      { name: 'web', publish: port, mode: 'https', backends: [backend.address], hsts: 'max-age=31536000' },
      { name: 'to-https', publish: plain, mode: 'http', backends: [backend.address], redirect: `https:${port}` },
      { name: 'to-443', publish: plain443, mode: 'http', backends: [backend.address], redirect: 'https' },
    ]);
    try {
      const hits = backend.hits;
      const r = await get(plain, '/p?q=1', { host: `a.test:${plain}` });
      assert.equal(r.status, 308);
      assert.equal(r.headers.location, `https://a.test:${port}/p?q=1`);
      assert.equal((await get(plain443, '/x', { host: `a.test:${plain443}` })).headers.location, 'https://a.test/x', 'port 443 is left out');
      assert.equal((await get(plain443, '/x', { host: 'a.test/evil' })).status, 400, 'a Host that is not a host name is refused');
      assert.equal(backend.hits, hits, 'redirected requests never reach the backend');

      const followed = await httpsGet(port, 'a.test', ca.pem, '/p?q=1');
      assert.equal(followed.status, 200);
      assert.equal(followed.headers['strict-transport-security'], 'max-age=31536000');
      const client = http2.connect(`https://127.0.0.1:${port}`, { ca: ca.pem, servername: 'a.test' });
      try {
        const h2 = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
          const req = client.request({ ':path': '/', ':authority': 'a.test' });
          req.on('response', resolve);
          req.on('error', reject);
          req.resume();
        });
        assert.equal(h2['strict-transport-security'], 'max-age=31536000');
      } finally {
        client.destroy();
      }
      assert.equal((await get(plain, '/')).status, 308);
    } finally {
      await m.update([{ name: 'web', publish: port, mode: 'https', backends: [backend.address] }]);
    }
    assert.equal((await httpsGet(port, 'a.test', ca.pem)).headers['strict-transport-security'], undefined, 'off by default');
  });

  it('answers a slow request head with 408 and cuts a stalled handshake, as on plain HTTP', async () => {
    const head = await new Promise<{ data: string; ms: number }>((resolve, reject) => {
      const start = Date.now();
      const s = tls.connect({ host: '127.0.0.1', port, servername: 'a.test', ca: ca.pem }, () => s.write('GET / HTTP/1.1\r\nHost: a.test\r\n'));
      let data = '';
      s.on('data', (c) => (data += c));
      s.on('error', reject);
      s.on('close', () => resolve({ data, ms: Date.now() - start }));
      setTimeout(() => s.destroy(), 5000);
    });
    assert.match(head.data, /^HTTP\/1\.1 408 Request Timeout/);
    assert.ok(head.ms < 3000, `cut after ${head.ms} ms`);

    const before = await metric(m.adminPort, 'meshd_tls_handshake_failures_total', 'reason="timeout"');
    const closedAfter = await new Promise<number>((resolve) => {
      const start = Date.now();
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => {});
      s.on('close', () => resolve(Date.now() - start));
      setTimeout(() => s.destroy(), 5000);
    });
    assert.ok(closedAfter >= 900 && closedAfter < 3000, `a silent client is closed after the handshake timeout (${closedAfter} ms)`);
    assert.equal(await metric(m.adminPort, 'meshd_tls_handshake_failures_total', 'reason="timeout"'), before + 1);
  });

  it('without any certificate, refuses the handshake and says why on the route', async () => {
    const bare = new TestMeshd();
    try {
      const p = await freePort();
      await bare.start([{ name: 'bare', publish: p, mode: 'https', backends: [backend.address] }]);
      const out = await sClient(p, ['-servername', 'a.test']);
      assert.match(out, /alert handshake failure/);
      const route = JSON.parse((await get(bare.adminPort, '/api/routes')).body).routes[0];
      assert.match(route.tls.problems[0], /no certificate loaded: TLS handshakes on this port are refused/);
      await waitFor(async () => (await metric(bare.adminPort, 'meshd_tls_handshake_failures_total', 'reason="no-certificate"')) === 1, 2000, 'failure counted');
    } finally {
      await bare.stop();
    }
  });
});

/** Runs curl with the test CA, resolving `host` to loopback; resolves with its stdout and stderr. */
function curl(port: number, host: string, caFile: string, args: string[]): Promise<{ out: string; err: string }> {
  return new Promise((resolve, reject) => {
    execFile('curl', ['-sS', '--cacert', caFile, '--resolve', `${host}:${port}:127.0.0.1`, ...args], { timeout: 10_000 }, (err, out, errText) => {
      if (err) reject(new Error(`curl failed: ${errText}`));
      else resolve({ out, err: errText });
    });
  });
}

/** An HTTP/2 frame: 9-byte header and payload. */
function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
}

/** An HPACK literal header field without indexing, with a new name (RFC 7541 §6.2.2). */
function literal(name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0x00, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)]);
}

describe('HTTP/2 on https ports', () => {
  let ca: TestCA;
  let m: TestMeshd;
  let port: number;
  let caFile: string;
  const echo = new Backend('echo', (req, res) => {
    let n = 0;
    req.on('data', (c: Buffer) => (n += c.length));
    req.on('end', () => {
      if (req.url === '/health') return void res.end('ok');
      res.setHeader('set-cookie', ['a=1', 'b=2']);
      res.setHeader('x-backend', 'echo');
      res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, received: n }));
    });
  });
  const h2Options = () => ({ ca: ca.pem, servername: 'a.test' });
  const h2Request = (client: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: string) => new Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: string }>((resolve, reject) => {
    const req = client.request(headers, { endStream: body === undefined });
    let text = '';
    let head: http2.IncomingHttpHeaders = {};
    req.setEncoding('utf8');
    req.on('response', (h) => (head = h));
    req.on('data', (c: string) => (text += c));
    req.on('end', () => resolve({ status: Number(head[':status']), headers: head, body: text }));
    req.on('error', reject);
    if (body !== undefined) req.end(body);
  });

  before(async () => {
    ca = new TestCA();
    const a = ca.issue(['a.test']);
    await echo.start();
    port = await freePort();
    m = new TestMeshd();
    fs.mkdirSync(path.join(m.dir, 'tls'));
    writeAtomic(path.join(m.dir, 'tls', 'a.pem'), a.cert + a.key);
    caFile = ca.certFile;
    await m.start([{ name: 'echo', publish: port, mode: 'https', hosts: ['a.test'], backends: [echo.address] }]);
  });
  after(async () => {
    await m?.stop();
    await echo.kill();
    ca.remove();
  });

  it('speaks HTTP/2 to curl --http2 and HTTP/1.1 to the backend', async () => {
    const { out, err } = await curl(port, 'a.test', caFile, ['-v', '--http2', '-D', '-', '-b', 'c=1', '--data-binary', 'hello', `https://a.test:${port}/x?y=1`]);
    assert.match(err, /ALPN: server accepted h2/);
    assert.match(out, /^HTTP\/2 200/);
    assert.match(out, /^set-cookie: a=1\r$/m);
    assert.match(out, /^set-cookie: b=2\r$/m);
    const seen = JSON.parse(out.slice(out.indexOf('\r\n\r\n') + 4));
    assert.equal(seen.method, 'POST');
    assert.equal(seen.url, '/x?y=1');
    assert.equal(seen.received, 5);
    assert.equal(seen.headers.host, `a.test:${port}`);
    assert.equal(seen.headers.cookie, 'c=1');
    assert.equal(seen.headers['x-forwarded-proto'], 'https');
    assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
  });

  it('joins split cookies, streams a body without length as chunked, and routes by :authority', async () => {
    const client = http2.connect(`https://127.0.0.1:${port}`, h2Options());
    try {
      const r = await h2Request(client, { ':method': 'PUT', ':path': '/up', ':authority': `a.test:${port}`, cookie: ['x=1', 'y=2'], te: 'trailers' }, 'z'.repeat(100_000));
      assert.equal(r.status, 200);
      const seen = JSON.parse(r.body);
      assert.deepEqual([seen.headers.cookie, seen.headers['transfer-encoding'], seen.headers.te, seen.received], ['x=1; y=2', 'chunked', undefined, 100_000]);
      const other = await h2Request(client, { ':path': '/', ':authority': 'nobody.test' });
      assert.equal(other.status, 404, 'a host with no route');
      assert.equal(other.headers['x-meshd-error'], 'NO_ROUTE');
    } finally {
      client.destroy();
    }
  });

  /** A raw HTTP/2 client over TLS: preface and SETTINGS sent; collects the frames meshd sends until it closes. */
  async function rawH2(): Promise<{ s: tls.TLSSocket; closed: Promise<void>; goaway: () => number | undefined }> {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'a.test', ca: ca.pem, ALPNProtocols: ['h2'] });
    await new Promise((resolve, reject) => { s.once('secureConnect', resolve); s.once('error', reject); });
    assert.equal(s.alpnProtocol, 'h2');
    let received = Buffer.alloc(0);
    s.on('data', (c: Buffer) => (received = Buffer.concat([received, c])));
    s.on('error', () => {});
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    s.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(0x4, 0, 0, Buffer.alloc(0))]));
    const goaway = () => {
      for (let at = 0; at + 9 <= received.length;) {
        const len = received.readUIntBE(at, 3);
        if (received[at + 3] === 0x7 && at + 17 <= received.length) return received.readUInt32BE(at + 13);
        at += 9 + len;
      }
      return undefined;
    };
    return { s, closed, goaway };
  }
  /** HPACK: GET https://a.test/ from the static table, :authority as a literal without indexing. */
  const GET_BLOCK = Buffer.concat([Buffer.from([0x82, 0x87, 0x84, 0x01, 6]), Buffer.from('a.test')]);

  it('closes a client that resets streams rapidly (CVE-2023-44487); another client is unaffected', async () => {
    const bystander = http2.connect(`https://127.0.0.1:${port}`, h2Options());
    const abuser = await rawH2();
    try {
      assert.equal((await h2Request(bystander, { ':path': '/', ':authority': 'a.test' })).status, 200);
      const trips = m.meshd.stats.limits.get('h2-rapid-reset') ?? 0;
      let sent = 0;
      for (let batch = 0; batch < 50 && !abuser.s.destroyed; batch++) {
        const frames: Buffer[] = [];
        for (let i = 0; i < 20; i++, sent++) {
          const id = 1 + 2 * sent;
          frames.push(frame(0x1, 0x5 /* END_STREAM | END_HEADERS */, id, GET_BLOCK), frame(0x3, 0, id, Buffer.from([0, 0, 0, http2.constants.NGHTTP2_CANCEL])));
        }
        abuser.s.write(Buffer.concat(frames));
        await new Promise((r) => setTimeout(r, 2));
      }
      await Promise.race([abuser.closed, new Promise((r) => setTimeout(r, 5000))]);
      assert.ok(abuser.s.destroyed, `the abuser was closed (after ${sent} resets)`);
      assert.equal(abuser.goaway(), http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, 'with a GOAWAY saying why');
      assert.ok(sent < 1000, `closed after ${sent} resets, before the loop ran out`);
      assert.equal(m.meshd.stats.limits.get('h2-rapid-reset'), trips + 1);
      assert.equal(await metric(m.adminPort, 'meshd_client_limit_trips_total', 'limit="h2-rapid-reset"'), trips + 1);
      assert.equal((await h2Request(bystander, { ':path': '/', ':authority': 'a.test' })).status, 200, 'the other client goes on');
      assert.ok(!bystander.closed && !bystander.destroyed);
    } finally {
      abuser.s.destroy();
      bystander.destroy();
    }
  });

  it('closes a client that floods CONTINUATION frames; another client is unaffected', async () => {
    const bystander = http2.connect(`https://127.0.0.1:${port}`, h2Options());
    const flood = await rawH2();
    try {
      flood.s.write(frame(0x1, 0x1 /* END_STREAM, no END_HEADERS */, 1, GET_BLOCK));
      let sent = 0;
      for (let i = 0; i < 200 && !flood.s.destroyed; i++, sent++) {
        flood.s.write(frame(0x9, 0, 1, literal(`x-${i}`, 'v')));
        if (i % 10 === 9) await new Promise((r) => setTimeout(r, 5));
      }
      await Promise.race([flood.closed, new Promise((r) => setTimeout(r, 5000))]);
      assert.ok(flood.s.destroyed, 'the flooding connection was closed');
      assert.notEqual(flood.goaway(), undefined, 'with a GOAWAY');
      assert.ok(sent < 200, `closed after ${sent} CONTINUATION frames`);
      assert.equal((await h2Request(bystander, { ':path': '/', ':authority': 'a.test' })).status, 200, 'the other client is served');
    } finally {
      flood.s.destroy();
      bystander.destroy();
    }
  });

  it('resets a stream whose headers exceed --max-header-size, and serves the next', async () => {
    const client = http2.connect(`https://127.0.0.1:${port}`, h2Options());
    try {
      // The limit holds once the client has acknowledged meshd's SETTINGS (one round trip); before, nghttp2's 64 KiB default does.
      assert.equal((await h2Request(client, { ':path': '/', ':authority': 'a.test' })).status, 200);
      const big = h2Request(client, { ':path': '/', ':authority': 'a.test', 'x-big': 'x'.repeat(m.config.maxHeaderSize + 1) });
      await assert.rejects(big, /ERR_HTTP2_STREAM_ERROR|NGHTTP2_ENHANCE_YOUR_CALM|NGHTTP2_REFUSED_STREAM|NGHTTP2_PROTOCOL_ERROR/);
      assert.equal((await h2Request(client, { ':path': '/', ':authority': 'a.test' })).status, 200);
    } finally {
      client.destroy();
    }
  });
});
