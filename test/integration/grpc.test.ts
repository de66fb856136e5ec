// h2c backends through a real meshd on loopback. gRPC: two grpc-js servers
// behind an h2c route, grpc-js clients over TLS (ALPN h2) on an https port and
// with prior knowledge on a plain port; messages travel as JSON (grpc-js takes
// any codec), except the standard health service's reply, which meshd's probe
// decodes. Then a node http2 server for resets, GOAWAY and a stream limit.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { TestCA } from '../support/certs.js';
import { TestMeshd } from '../support/meshd.js';
import { freePort, get, waitFor } from '../support/net.js';

const json = {
  serialize: (v: unknown) => Buffer.from(JSON.stringify(v)),
  deserialize: (b: Buffer) => JSON.parse(b.toString()) as unknown,
};
function method(name: string, requestStream: boolean, responseStream: boolean) {
  return {
    path: `/meshd.test.Echo/${name}`, requestStream, responseStream,
    requestSerialize: json.serialize, requestDeserialize: json.deserialize,
    responseSerialize: json.serialize, responseDeserialize: json.deserialize,
  };
}
const echo = {
  whoAmI: method('WhoAmI', false, false),
  count: method('Count', false, true),
  sum: method('Sum', true, false),
  fail: method('Fail', false, false),
};
const health = {
  check: {
    path: '/grpc.health.v1.Health/Check', requestStream: false, responseStream: false,
    requestSerialize: () => Buffer.alloc(0), requestDeserialize: () => ({}),
    // HealthCheckResponse { status = 1 (SERVING) | 2 (NOT_SERVING) }
    responseSerialize: (serving: boolean) => Buffer.from([0x08, serving ? 1 : 2]), responseDeserialize: (b: Buffer) => b[1] === 1,
  },
};

type Unary = grpc.handleUnaryCall<any, any>;

/** A grpc-js server on loopback that answers with its name. */
class GrpcBackend {
  readonly server = new grpc.Server();
  port = 0;
  serving = true;
  /** Server-streaming calls the client cancelled. */
  cancelled = 0;
  lastMetadata: grpc.Metadata | undefined;

  constructor(readonly name: string) {
    const whoAmI: Unary = (call, cb) => {
      this.lastMetadata = call.metadata;
      const trailer = new grpc.Metadata();
      trailer.set('x-served-by', name);
      cb(null, { name, echo: call.request }, trailer);
    };
    const fail: Unary = (_call, cb) => {
      const md = new grpc.Metadata();
      md.set('x-why', 'because');
      cb({ code: grpc.status.NOT_FOUND, details: `no such thing on ${name}`, metadata: md });
    };
    this.server.addService(echo, {
      whoAmI,
      fail,
      count: (call: grpc.ServerWritableStream<{ n: number; size?: number; every?: number }, unknown>) => {
        const { n, size = 0, every = 0 } = call.request;
        let i = 0;
        let timer: NodeJS.Timeout | undefined;
        call.on('cancelled', () => {
          this.cancelled++;
          clearInterval(timer);
        });
        const pad = 'x'.repeat(size);
        if (every) timer = setInterval(() => (i < n ? call.write({ i: i++ }) : (clearInterval(timer), call.end())), every);
        else {
          for (; i < n; i++) call.write({ i, pad });
          call.end();
        }
      },
      sum: (call: grpc.ServerReadableStream<{ v: number }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        let total = 0;
        let count = 0;
        call.on('data', (m: { v: number }) => {
          total += m.v;
          count++;
        });
        call.on('end', () => cb(null, { total, count, name }));
      },
    });
    this.server.addService(health, { check: ((_call, cb) => cb(null, this.serving)) as Unary });
  }

  async start(port = 0): Promise<this> {
    this.port = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
    });
    return this;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  kill(): void {
    this.server.forceShutdown();
  }
}

const Client = grpc.makeGenericClientConstructor(echo, 'Echo');
type EchoClient = InstanceType<typeof Client> & Record<string, (...args: any[]) => any>;

function unary(client: EchoClient, name: string, request: unknown = {}): Promise<{ reply: any; trailers: grpc.Metadata }> {
  return new Promise((resolve, reject) => {
    let trailers = new grpc.Metadata();
    const call = client[name]!(request, { deadline: Date.now() + 5000 }, (err: grpc.ServiceError | null, reply: unknown) => {
      if (err) reject(err);
      else setImmediate(() => resolve({ reply, trailers }));
    });
    call.on('status', (s: grpc.StatusObject) => (trailers = s.metadata));
  });
}

async function whoAmI(client: EchoClient): Promise<string> {
  return (await unary(client, 'whoAmI')).reply.name as string;
}

describe('gRPC over h2c backends', () => {
  let ca: TestCA;
  let m: TestMeshd;
  let a: GrpcBackend;
  let b: GrpcBackend;
  let tlsPort: number;
  let plainPort: number;
  let tlsClient: EchoClient;
  let plainClient: EchoClient;

  before(async () => {
    ca = new TestCA();
    const pem = ca.issue(['grpc.test']);
    a = await new GrpcBackend('a').start();
    b = await new GrpcBackend('b').start();
    [tlsPort, plainPort] = [await freePort(), await freePort()];
    m = new TestMeshd();
    const tlsDir = path.join(m.dir, 'tls');
    fs.mkdirSync(tlsDir);
    fs.writeFileSync(path.join(tlsDir, 'grpc.crt'), pem.cert);
    fs.writeFileSync(path.join(tlsDir, 'grpc.key'), pem.key);
    const route = { backends: [a.address, b.address], backend: 'h2c' as const, health: { path: '/grpc.health.v1.Health/Check' } };
    await m.start([
      { name: 'grpc', publish: tlsPort, mode: 'https', ...route },
      { name: 'grpc-plain', publish: plainPort, mode: 'http', ...route },
    ], ['--tls-default-cert', 'grpc']);
    const creds = grpc.credentials.createSsl(Buffer.from(ca.pem));
    tlsClient = new Client(`127.0.0.1:${tlsPort}`, creds, { 'grpc.ssl_target_name_override': 'grpc.test', 'grpc.default_authority': 'grpc.test' }) as EchoClient;
    plainClient = new Client(`127.0.0.1:${plainPort}`, grpc.credentials.createInsecure()) as EchoClient;
  });
  after(async () => {
    tlsClient?.close();
    plainClient?.close();
    await m?.stop();
    a?.kill();
    b?.kill();
    ca?.remove();
  });

  it('round-robins unary calls over both backends, with X-Forwarded-* and the trailing metadata', async () => {
    const names: string[] = [];
    for (let i = 0; i < 4; i++) names.push(await whoAmI(tlsClient));
    assert.deepEqual([...names].sort(), ['a', 'a', 'b', 'b']);
    assert.notEqual(names[0], names[1], 'consecutive calls go to different backends');
    const { reply, trailers } = await unary(tlsClient, 'whoAmI', { hello: 'world' });
    assert.deepEqual(reply.echo, { hello: 'world' });
    assert.deepEqual(trailers.get('x-served-by'), [reply.name], 'trailing metadata set after the reply arrives');
    const md = (reply.name === 'a' ? a : b).lastMetadata!;
    assert.deepEqual(md.get('x-forwarded-proto'), ['https']);
    assert.deepEqual(md.get('x-forwarded-for'), ['127.0.0.1']);
    assert.deepEqual(md.get('x-forwarded-host'), ['grpc.test']);
  });

  it('passes a non-OK status, its message and metadata through (a trailers-only answer)', async () => {
    const err = await unary(tlsClient, 'fail').then(() => assert.fail('the call should fail'), (e: grpc.ServiceError) => e);
    assert.equal(err.code, grpc.status.NOT_FOUND);
    assert.match(err.details, /^no such thing on [ab]$/);
    assert.deepEqual(err.metadata.get('x-why'), ['because']);
  });

  it('streams a server-streaming call whole, past HTTP/2 flow-control windows', async () => {
    const got: number[] = [];
    await new Promise<void>((resolve, reject) => {
      const call = tlsClient.count!({ n: 300, size: 16_384 });
      call.on('data', (msg: { i: number; pad: string }) => {
        assert.equal(msg.pad.length, 16_384);
        got.push(msg.i);
      });
      call.on('error', reject);
      call.on('end', resolve);
    });
    assert.deepEqual(got, Array.from({ length: 300 }, (_, i) => i));
  });

  it('streams a client-streaming call to the backend', async () => {
    const reply = await new Promise<any>((resolve, reject) => {
      const call = tlsClient.sum!((err: grpc.ServiceError | null, r: unknown) => (err ? reject(err) : resolve(r)));
      for (let i = 1; i <= 1000; i++) call.write({ v: i });
      call.end();
    });
    assert.deepEqual([reply.total, reply.count], [500_500, 1000]);
  });

  it('cancels the backend stream when the client cancels its call', async () => {
    const before = a.cancelled + b.cancelled;
    await new Promise<void>((resolve) => {
      const call = tlsClient.count!({ n: 1000, every: 10 });
      let n = 0;
      call.on('data', () => {
        if (++n === 3) call.cancel();
      });
      call.on('error', () => resolve());
    });
    await waitFor(() => a.cancelled + b.cancelled > before, 3000, 'the backend to see its call cancelled');
  });

  it('serves gRPC clients that speak h2c with prior knowledge on a plain http port', async () => {
    const names = [await whoAmI(plainClient), await whoAmI(plainClient)];
    assert.deepEqual([...names].sort(), ['a', 'b']);
    const md = (names[1] === 'a' ? a : b).lastMetadata!;
    assert.deepEqual(md.get('x-forwarded-proto'), ['http']);
    const err = await unary(plainClient, 'fail').then(() => undefined, (e: grpc.ServiceError) => e);
    assert.equal(err?.code, grpc.status.NOT_FOUND);
    assert.equal((await get(plainPort, '/')).status, 415, 'an HTTP/1.1 client still reaches the backend (a gRPC server refuses it)');
  });

  it('probes with the gRPC health service: a backend NOT_SERVING gets no calls until it serves again', async () => {
    a.serving = false;
    await waitFor(() => m.backend(tlsPort, a.address)?.activeDown, 5000, 'a to fail its probes');
    assert.deepEqual([await whoAmI(tlsClient), await whoAmI(tlsClient), await whoAmI(tlsClient)], ['b', 'b', 'b']);
    assert.match(m.backend(tlsPort, a.address)!.lastProbeError ?? '', /not serving/);
    a.serving = true;
    await waitFor(() => m.backend(tlsPort, a.address)?.eligible, 5000, 'a to pass its probes again');
  });

  it('sends calls to the other backend once one is killed', async () => {
    // Both backends have an open session from meshd by now.
    assert.deepEqual([await whoAmI(tlsClient), await whoAmI(tlsClient)].sort(), ['a', 'b']);
    a.kill();
    const names: string[] = [];
    for (let i = 0; i < 6; i++) names.push(await whoAmI(tlsClient));
    assert.deepEqual(names, ['b', 'b', 'b', 'b', 'b', 'b']);
    assert.ok(m.backend(tlsPort, a.address)!.ejected || m.backend(tlsPort, a.address)!.activeDown, 'a is out of rotation');
  });
});

/** An HTTP/2 backend in the clear made with node's http2, for what grpc-js servers never do (resets, GOAWAY, a stream limit). */
class H2cBackend {
  readonly server = http2.createServer({ settings: { maxConcurrentStreams: 2 } });
  port = 0;
  /** Sessions that carried a stream (meshd's TCP health probes open none). */
  readonly streamSessions = new WeakSet<http2.Http2Session>();
  sessions = 0;
  inFlight = 0;
  peak = 0;

  constructor() {
    this.server.on('session', (s) => s.on('error', () => {}));
    this.server.on('stream', (stream, headers) => {
      if (!this.streamSessions.has(stream.session!)) {
        this.streamSessions.add(stream.session!);
        this.sessions++;
      }
      stream.on('error', () => {});
      const path = headers[':path'];
      if (path === '/reset') return void stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      if (path === '/reset-after-head' || path === '/cut-session') {
        stream.respond({ ':status': 200 });
        stream.write('partial');
        // destroy(), not close(code): the request has ended, and close() would end the answer cleanly first.
        const session = stream.session!;
        return void setTimeout(() => (path === '/cut-session' ? session.destroy() : stream.destroy(new Error('cut'))), 50);
      }
      if (path === '/goaway') {
        stream.respond({ ':status': 200 });
        stream.end('bye');
        const session = stream.session!;
        return void stream.once('close', () => session.close());
      }
      if (path === '/slow') {
        this.peak = Math.max(this.peak, ++this.inFlight);
        stream.once('close', () => this.inFlight--);
        return void setTimeout(() => {
          stream.respond({ ':status': 200 });
          stream.end('slow');
        }, 100);
      }
      let body = '';
      stream.setEncoding('utf8');
      stream.on('data', (c: string) => (body += c));
      stream.on('end', () => {
        stream.respond({ ':status': 200, 'content-type': 'application/json' }, { waitForTrailers: true });
        stream.once('wantTrailers', () => stream.sendTrailers({ 'x-length': String(body.length) }));
        stream.end(JSON.stringify({ headers, body }));
      });
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }

  stop(): Promise<unknown> {
    return new Promise((resolve) => this.server.close(resolve));
  }
}

/** One counter from /metrics. */
async function metric(adminPort: number, name: string, labels: RegExp): Promise<number> {
  const text = (await get(adminPort, '/metrics')).body;
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && labels.test(l));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

/** A request over HTTP/1.1, with a body sent chunked; resolves with the answer and its trailers. */
function h1Request(port: number, path: string, body?: string): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders; trailers: NodeJS.Dict<string> }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: body === undefined ? 'GET' : 'POST', agent: false, headers: { te: 'trailers' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, body: text, headers: res.headers, trailers: res.trailers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** A request over HTTP/2 with prior knowledge; resolves with what arrived, the status and the stream's error code, if any. */
function h2Request(port: number, path: string): Promise<{ status: number; body: string; error: string | undefined }> {
  return new Promise((resolve) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => {});
    const stream = session.request({ ':path': path });
    let status = 0;
    let body = '';
    let error: string | undefined;
    stream.on('response', (h) => (status = Number(h[':status'])));
    stream.setEncoding('utf8');
    stream.on('data', (c: string) => (body += c));
    stream.on('error', (err: NodeJS.ErrnoException) => (error = err.code));
    stream.on('close', () => {
      session.close();
      resolve({ status, body, error });
    });
  });
}

describe('h2c backends beyond gRPC', () => {
  let m: TestMeshd;
  let backend: H2cBackend;
  let port: number;

  before(async () => {
    backend = await new H2cBackend().start();
    port = await freePort();
    m = new TestMeshd();
    await m.start([{ name: 'h2c', publish: port, mode: 'http', backend: 'h2c', backends: [`127.0.0.1:${backend.port}`] }], ['--response-timeout', '250ms']);
  });
  after(async () => {
    await m?.stop();
    await backend?.stop();
  });

  it('converts an HTTP/1.1 request to HTTP/2, body and X-Forwarded-* included, and passes trailers to a chunked answer', async () => {
    const r = await h1Request(port, '/echo?q=1', 'x'.repeat(100_000));
    assert.equal(r.status, 200);
    const seen = JSON.parse(r.body) as { headers: http2.IncomingHttpHeaders; body: string };
    assert.equal(seen.body.length, 100_000);
    assert.equal(seen.headers[':method'], 'POST');
    assert.equal(seen.headers[':path'], '/echo?q=1');
    assert.equal(seen.headers[':authority'], `127.0.0.1:${port}`);
    assert.equal(seen.headers.te, 'trailers');
    assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(seen.headers['x-forwarded-proto'], 'http');
    assert.equal(seen.headers['transfer-encoding'], undefined);
    assert.equal(r.headers['transfer-encoding'], 'chunked');
    assert.deepEqual(r.trailers, { 'x-length': '100000' });
  });

  it('answers 502 when the backend resets the stream before its head, and counts why', async () => {
    const before = await metric(m.adminPort, 'meshd_backend_errors_total', /code="ERR_HTTP2_STREAM_ERROR"/);
    const answered = await metric(m.adminPort, 'meshd_proxy_answered_total', /code="BACKEND_FAILED"/);
    const r = await h1Request(port, '/reset');
    assert.equal(r.status, 502);
    assert.equal(r.headers['x-meshd-error'], 'BACKEND_FAILED');
    assert.equal((await h2Request(port, '/reset')).status, 502, 'an HTTP/2 client too');
    assert.equal(await metric(m.adminPort, 'meshd_backend_errors_total', /code="ERR_HTTP2_STREAM_ERROR"/), before + 2);
    assert.equal(await metric(m.adminPort, 'meshd_proxy_answered_total', /code="BACKEND_FAILED"/), answered + 2);
  });

  it('resets an HTTP/2 client\'s stream when the backend resets it or drops its session after the head', async () => {
    // Resets in a row eject the backend; its probes bring it back.
    const back = m.backend(port, `127.0.0.1:${backend.port}`)!;
    for (const path of ['/reset-after-head', '/cut-session']) {
      await waitFor(() => back.eligible, 3000, 'the backend in rotation');
      const r = await h2Request(port, path);
      assert.deepEqual(r, { status: 200, body: 'partial', error: 'ERR_HTTP2_STREAM_ERROR' }, path);
    }
    await waitFor(() => back.eligible, 3000, 'the backend back in rotation');
  });

  it('opens a new session once the backend sends GOAWAY', async () => {
    assert.equal((await h1Request(port, '/goaway')).body, 'bye');
    const sessions = backend.sessions;
    await new Promise((r) => setTimeout(r, 100));
    assert.equal((await h1Request(port, '/echo')).status, 200);
    assert.equal(backend.sessions, sessions + 1);
  });

  it('keeps to the backend\'s SETTINGS_MAX_CONCURRENT_STREAMS, queueing the rest on one session without using up their response timeout', async () => {
    const sessions = backend.sessions;
    backend.peak = 0;
    // Four rounds of two 100 ms answers; each request waits past the 250 ms response timeout, but not once sent.
    const replies = await Promise.all(Array.from({ length: 8 }, () => h1Request(port, '/slow')));
    assert.deepEqual(replies.map((r) => r.status), Array(8).fill(200));
    assert.equal(backend.peak, 2);
    assert.equal(backend.sessions, sessions, 'no session beyond the one open');
  });
});
