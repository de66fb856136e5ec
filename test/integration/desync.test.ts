// Request smuggling and response desync through meshd's L7 proxy on loopback.
// Request side: raw client bytes from RFC 9112 and the published research
// (Kettle, "HTTP Desync Attacks": CL.TE, TE.CL, Transfer-Encoding obfuscation)
// go to meshd in front of a backend that records every request it parses, once
// reading framing Content-Length first and once Transfer-Encoding first; no
// request may reach it that either reading would split differently. Response
// side: a backend frames its answers wrongly; no byte of that may reach another
// answer. One row per case: add rows to extend.
import assert from 'node:assert/strict';
import net from 'node:net';
import { PassThrough, type Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { UpstreamPool, type Exchange, type Sink } from '../../src/proxy/upstream.js';
import { TestMeshd } from '../support/meshd.js';
import { LlhttpResponses, type LlhttpMessage } from '../support/llhttp.js';
import { freePort } from '../support/net.js';

/** A raw client connection that reads meshd's answers with node's own parser. */
class RawClient {
  readonly socket: net.Socket;
  readonly methods: string[] = [];
  readonly responses = new LlhttpResponses(this.methods);
  raw = '';
  closed = false;
  #wake: (() => void) | undefined;

  private constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.on('data', (c: Buffer) => {
      this.raw += c.toString('latin1');
      this.responses.execute(c);
      this.#wake?.();
    });
    this.socket.on('error', () => {});
    this.socket.on('close', () => {
      this.closed = true;
      this.responses.finish();
      this.#wake?.();
    });
  }

  static async open(port: number): Promise<RawClient> {
    const c = new RawClient(port);
    await new Promise<void>((resolve, reject) => {
      c.socket.once('connect', resolve);
      c.socket.once('error', reject);
    });
    return c;
  }

  get replies(): LlhttpMessage[] {
    return this.responses.messages;
  }

  send(bytes: string, ...methods: string[]): void {
    this.methods.push(...(methods.length ? methods : ['GET']));
    this.socket.write(Buffer.from(bytes, 'latin1'));
  }

  /** Waits for `n` answers in all, the close, or `ms`; then `quiet` ms more for anything unasked for. */
  async read(n: number, ms = 3000, quiet = 100): Promise<void> {
    const deadline = Date.now() + ms;
    while (!this.closed && this.replies.length < n && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        setTimeout(resolve, Math.min(50, deadline - Date.now()));
      });
    }
    this.#wake = undefined;
    if (!this.closed) await new Promise((r) => setTimeout(r, quiet));
  }

  close(): void {
    this.socket.destroy();
  }
}

// ---- Request side ----

type Personality = 'content-length first' | 'transfer-encoding first';

interface Seen {
  path: string;
  /** Why two HTTP parsers could frame this request differently, if they could. */
  ambiguous: string | undefined;
}

/** Why a request head could be framed two ways, or undefined. */
function ambiguity(head: string): string | undefined {
  if (/(^|[^\r])\n/.test(head)) return 'bare LF';
  if (/\r\n[ \t]/.test(head)) return 'obs-fold';
  if (/[\x00-\x08\x0a-\x1f\x7f]/.test(head.replaceAll('\r\n', ''))) return 'control character';
  const fields = head.split('\r\n').slice(1);
  const named = (n: string) => fields.filter((f) => f.slice(0, f.indexOf(':')).toLowerCase() === n).map((f) => f.slice(f.indexOf(':') + 1).trim());
  if (fields.some((f) => /^[^:]*[ \t]:/.test(f))) return 'whitespace before a colon';
  if (fields.some((f) => /^(content[-_]length|transfer[-_]encoding)\b/i.test(f) && /_/.test(f.slice(0, f.indexOf(':'))))) return 'framing header spelt with "_"';
  const cl = named('content-length');
  const te = named('transfer-encoding');
  if (cl.length > 1) return 'more than one Content-Length';
  if (cl.length && !/^\d+$/.test(cl[0]!)) return 'Content-Length not 1*DIGIT';
  if (cl.length && te.length) return 'Content-Length and Transfer-Encoding';
  if (te.length && te.join(',').toLowerCase() !== 'chunked') return `Transfer-Encoding ${te.join(', ')}`;
  const host = named('host');
  if (host.length > 1) return 'more than one Host';
  // meshd routes by Host; a backend goes by an absolute-form target's authority (RFC 9112 §3.2.2).
  const target = /^[A-Z]+ https?:\/\/([^/?# ]*)/i.exec(head)?.[1];
  if (target !== undefined && target.toLowerCase() !== host[0]?.toLowerCase()) return 'target and Host name different hosts';
  return undefined;
}

/**
 * Parses what meshd sends in one personality, answers each request with its
 * index and path, and records it. A chunked body is read loosely (parseInt),
 * as lax servers do.
 */
class RecordingBackend {
  readonly server: net.Server;
  readonly seen: Seen[] = [];
  readonly sockets = new Set<net.Socket>();
  port = 0;

  constructor(readonly personality: Personality) {
    this.server = net.createServer((socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
      socket.on('error', () => {});
      let buf = '';
      socket.on('data', (c: Buffer) => {
        buf += c.toString('latin1');
        for (let n = 0; n < 100; n++) {
          const end = buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          const head = buf.slice(0, end);
          const bodyEnd = this.#bodyEnd(head, buf, end + 4);
          if (bodyEnd < 0) return;
          buf = buf.slice(bodyEnd);
          const path = head.slice(head.indexOf(' ') + 1, head.indexOf(' ', head.indexOf(' ') + 1));
          this.seen.push({ path, ambiguous: ambiguity(head) });
          const body = `seen:${this.seen.length - 1}:${path}`;
          socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
        }
      });
    });
  }

  /** Where the body that starts at `from` ends, in this personality; -1 when not all there yet. */
  #bodyEnd(head: string, buf: string, from: number): number {
    const cl = /\r\ncontent-length:[ \t]*([^\r\n]*)/i.exec(head)?.[1];
    const chunked = /\r\ntransfer-encoding:[^\r\n]*chunked/i.test(head);
    const byLength = cl !== undefined && (this.personality === 'content-length first' || !chunked);
    if (byLength) {
      const end = from + (parseInt(cl, 10) || 0);
      return buf.length >= end ? end : -1;
    }
    if (!chunked) return from;
    let at = from;
    for (;;) {
      const nl = buf.indexOf('\r\n', at);
      if (nl < 0) return -1;
      const size = parseInt(buf.slice(at, nl), 16) || 0;
      at = nl + 2;
      if (size === 0) {
        const end = buf.indexOf('\r\n\r\n', at - 2);
        return end < 0 ? -1 : end + 4;
      }
      at += size + 2;
      if (at > buf.length) return -1;
    }
  }

  async start(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }

  async stop(): Promise<void> {
    const closed = new Promise((r) => this.server.close(r));
    for (const s of this.sockets) s.destroy();
    await closed;
  }
}

const HOST = 'Host: desync.test';
/** A request whose head is `lines`, then `body`. */
const r = (lines: string[], body = '') => `${lines.join('\r\n')}\r\n\r\n${body}`;
/** The request smuggled inside another; the backend must never parse it as one. */
const SMUGGLED = r(['GET /smuggled HTTP/1.1', HOST]);
const hex = (s: string) => Buffer.byteLength(s, 'latin1').toString(16);
/** A body that is one empty chunked body followed by SMUGGLED to a Transfer-Encoding reader. */
const TE_BODY = `0\r\n\r\n${SMUGGLED}`;
/** With `Transfer-Encoding: <te>` and a Content-Length that covers TE_BODY: CL.TE. */
const clte = (te: string[]) => r(['POST /clte HTTP/1.1', HOST, `Content-Length: ${TE_BODY.length}`, ...te], TE_BODY);

interface RequestCase {
  name: string;
  bytes: string;
  /** `reject`: a 4xx (or a close) and nothing reaches the backend; a number: that many answers, each the backend's own. */
  expect: 'reject' | number;
}

const REQUEST_CASES: RequestCase[] = [
  // Baselines: the harness sees sound requests through, framed one way.
  { name: 'one GET', bytes: r(['GET /a HTTP/1.1', HOST]), expect: 1 },
  { name: 'two pipelined GETs', bytes: r(['GET /a HTTP/1.1', HOST]) + r(['GET /b HTTP/1.1', HOST]), expect: 2 },
  { name: 'POST with Content-Length', bytes: r(['POST /a HTTP/1.1', HOST, 'Content-Length: 5'], 'hello'), expect: 1 },
  { name: 'chunked POST with extensions and trailers', bytes: r(['POST /a HTTP/1.1', HOST, 'Transfer-Encoding: chunked'], '5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n'), expect: 1 },
  { name: 'Transfer-Encoding in odd case', bytes: r(['POST /a HTTP/1.1', HOST, 'transfer-ENCODING: cHuNkEd'], `${hex(SMUGGLED)}\r\n${SMUGGLED}\r\n0\r\n\r\n`), expect: 1 },
  { name: 'absolute-form naming the Host', bytes: r(['GET http://desync.test/a HTTP/1.1', HOST]), expect: 1 },
  { name: 'HTTP/1.0 without Host', bytes: r(['GET /a HTTP/1.0']), expect: 1 },
  // CL.TE and TE.CL
  { name: 'CL.TE', bytes: clte(['Transfer-Encoding: chunked']), expect: 'reject' },
  { name: 'TE.CL', bytes: r(['POST /tecl HTTP/1.1', HOST, 'Content-Length: 4', 'Transfer-Encoding: chunked'], `${hex(SMUGGLED)}\r\n${SMUGGLED}\r\n0\r\n\r\n`), expect: 'reject' },
  { name: 'TE.CL, Content-Length last', bytes: r(['POST /tecl HTTP/1.1', HOST, 'Transfer-Encoding: chunked', 'Content-Length: 4'], `${hex(SMUGGLED)}\r\n${SMUGGLED}\r\n0\r\n\r\n`), expect: 'reject' },
  // Transfer-Encoding obfuscation, with a Content-Length beside it
  { name: 'TE: space before the colon', bytes: clte(['Transfer-Encoding : chunked']), expect: 'reject' },
  { name: 'TE: xchunked', bytes: clte(['Transfer-Encoding: xchunked']), expect: 'reject' },
  { name: 'TE: chunked, identity', bytes: clte(['Transfer-Encoding: chunked, identity']), expect: 'reject' },
  { name: 'TE: two headers', bytes: clte(['Transfer-Encoding: chunked', 'Transfer-Encoding: x']), expect: 'reject' },
  { name: 'TE: tab before the value', bytes: clte(['Transfer-Encoding:\tchunked']), expect: 'reject' },
  { name: 'TE: obs-folded value', bytes: clte(['Transfer-Encoding:\r\n chunked']), expect: 'reject' },
  { name: 'TE: folded onto the line before', bytes: clte(['X-A: 1', ' Transfer-Encoding: chunked']), expect: 'reject' },
  { name: 'TE: vertical tab', bytes: clte(['Transfer-Encoding: \x0bchunked']), expect: 'reject' },
  { name: 'TE: quoted', bytes: clte(['Transfer-Encoding: "chunked"']), expect: 'reject' },
  { name: 'TE: underscore', bytes: clte(['Transfer_Encoding: chunked']), expect: 'reject' },
  { name: 'TE: NUL after chunked', bytes: clte(['Transfer-Encoding: chunked\x00']), expect: 'reject' },
  // Transfer-Encoding alone, not ending in chunked
  { name: 'TE: xchunked alone', bytes: r(['POST /te HTTP/1.1', HOST, 'Transfer-Encoding: xchunked'], TE_BODY), expect: 'reject' },
  { name: 'TE: chunked, gzip alone', bytes: r(['POST /te HTTP/1.1', HOST, 'Transfer-Encoding: chunked, gzip'], TE_BODY), expect: 'reject' },
  // obs-fold, bare LF, control characters
  { name: 'obs-fold in any header', bytes: r(['GET /fold HTTP/1.1', HOST, 'X-A: a', ' b']), expect: 'reject' },
  { name: 'bare LF ending the request line', bytes: `GET /lf HTTP/1.1\n${HOST}\r\n\r\n`, expect: 'reject' },
  { name: 'bare LF ending a header', bytes: `GET /lf HTTP/1.1\r\n${HOST}\nX-A: 1\r\n\r\n`, expect: 'reject' },
  { name: 'bare LF everywhere', bytes: `GET /lf HTTP/1.1\n${HOST}\n\n`, expect: 'reject' },
  { name: 'bare LF after a chunk size', bytes: r(['POST /lf HTTP/1.1', HOST, 'Transfer-Encoding: chunked'], `5\nhello\r\n0\r\n\r\n`), expect: 'reject' },
  { name: 'NUL in a header value', bytes: r(['GET /nul HTTP/1.1', HOST, 'X-A: a\x00b']), expect: 'reject' },
  { name: 'NUL in the request line', bytes: r(['GET /nul\x00 HTTP/1.1', HOST]), expect: 'reject' },
  // Content-Length
  { name: 'two different Content-Lengths', bytes: r(['POST /cl HTTP/1.1', HOST, 'Content-Length: 5', `Content-Length: ${5 + SMUGGLED.length}`], `hello${SMUGGLED}`), expect: 'reject' },
  { name: 'Content-Length +5', bytes: r(['POST /cl HTTP/1.1', HOST, 'Content-Length: +5'], 'hello'), expect: 'reject' },
  { name: 'Content-Length -1', bytes: r(['POST /cl HTTP/1.1', HOST, 'Content-Length: -1'], 'hello'), expect: 'reject' },
  { name: 'Content-Length 5 5', bytes: r(['POST /cl HTTP/1.1', HOST, 'Content-Length: 5 5'], 'hello'), expect: 'reject' },
  { name: 'Content_Length', bytes: r(['POST /cl HTTP/1.1', HOST, 'Content_Length: 5'], 'hello'), expect: 'reject' },
  // Chunked coding
  { name: 'chunk size overflow', bytes: r(['POST /chunk HTTP/1.1', HOST, 'Transfer-Encoding: chunked'], `ffffffffffffffffff\r\nhello\r\n0\r\n\r\n${SMUGGLED}`), expect: 'reject' },
  { name: 'no CRLF after chunk data', bytes: r(['POST /chunk HTTP/1.1', HOST, 'Transfer-Encoding: chunked'], `5\r\nhelloXX0\r\n\r\n`), expect: 'reject' },
  // Host and the request target (src/proxy/request-checks.ts)
  { name: 'two Host headers', bytes: r(['GET /host HTTP/1.1', HOST, 'Host: other.test']), expect: 'reject' },
  { name: 'absolute-form naming another host', bytes: r(['GET http://other.test/ HTTP/1.1', HOST]), expect: 'reject' },
  { name: 'Host with a space', bytes: r(['GET /host HTTP/1.1', 'Host: desync.test other.test']), expect: 'reject' },
  { name: 'Host with userinfo', bytes: r(['GET /host HTTP/1.1', 'Host: user@desync.test']), expect: 'reject' },
  { name: 'Host with a path', bytes: r(['GET /host HTTP/1.1', 'Host: desync.test/x']), expect: 'reject' },
  { name: 'HTTP/1.1 without Host', bytes: r(['GET /host HTTP/1.1']), expect: 'reject' },
];

describe('request smuggling through meshd', () => {
  let m: TestMeshd;
  const routes: { backend: RecordingBackend; port: number }[] = [];

  before(async () => {
    for (const p of ['content-length first', 'transfer-encoding first'] as const) {
      routes.push({ backend: await new RecordingBackend(p).start(), port: await freePort() });
    }
    m = await new TestMeshd().start(routes.map((x, i) => ({ name: `desync-${i}`, publish: x.port, mode: 'http' as const, backends: [`127.0.0.1:${x.backend.port}`] })), ['--health-interval', '5s']);
  });
  after(async () => {
    await m?.stop();
    for (const x of routes) await x.backend.stop();
  });

  for (const c of REQUEST_CASES) {
    it(`${c.name}: ${c.expect === 'reject' ? 'refused' : `${c.expect} request(s), each framed one way`}`, async () => {
      for (const { backend, port } of routes) {
        const what = `${c.name} (${backend.personality})`;
        const from = backend.seen.length;
        const client = await RawClient.open(port);
        try {
          client.send(c.bytes, ...Array(c.expect === 'reject' ? 1 : c.expect).fill('GET'));
          await client.read(c.expect === 'reject' ? 1 : c.expect);
        } finally {
          client.close();
        }
        // Whatever meshd did, the backend never parsed the smuggled request or an ambiguous one.
        const seen = backend.seen.slice(from);
        assert.deepEqual(seen.filter((s) => s.path.includes('smuggled') || s.ambiguous), [], what);
        const answers = client.replies.map((x) => `${x.status} ${x.body}`);
        if (c.expect === 'reject') {
          assert.deepEqual(seen, [], `${what}: nothing reached the backend`);
          assert.ok(answers.every((a) => /^4\d\d /.test(a)), `${what}: answered ${JSON.stringify(answers)}`);
          assert.ok(answers.length > 0 || client.closed, `${what}: neither refused nor closed`);
        } else {
          // Each answer is the backend's answer to exactly one request it parsed, in order.
          assert.deepEqual(answers, seen.map((s, i) => `200 seen:${from + i}:${s.path}`), what);
          assert.equal(seen.length, c.expect, what);
        }
        // And an ordinary request on a fresh connection is served as usual.
        const next = await RawClient.open(port);
        try {
          next.send(r(['GET /after HTTP/1.1', HOST]));
          await next.read(1, 3000, 0);
        } finally {
          next.close();
        }
        assert.deepEqual(next.replies.map((x) => `${x.status} ${x.body}`), [`200 seen:${backend.seen.length - 1}:/after`], `${what}: the next request`);
      }
    });
  }
});

// ---- Response side ----

interface ResponseCase {
  name: string;
  method?: 'GET' | 'HEAD';
  /** What the misbehaving backend writes, at once; `later` after 30 ms. */
  write: string;
  later?: string;
  /** The status the client gets, or `cut` when the response was already under way and is cut off. */
  expect: number | 'cut';
  body?: string;
}

/** Bytes that must never reach a client. */
const EVIL = 'EVIL';
const EVIL_RESPONSE = `HTTP/1.1 200 OK\r\nContent-Length: ${EVIL.length}\r\n\r\n${EVIL}`;

const RESPONSE_CASES: ResponseCase[] = [
  { name: 'a response after the body', write: `HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok${EVIL_RESPONSE}`, expect: 200, body: 'ok' },
  { name: 'bytes after the body', write: `HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok${EVIL}`, expect: 200, body: 'ok' },
  { name: 'an unsolicited second response, later', write: 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok', later: EVIL_RESPONSE, expect: 200, body: 'ok' },
  { name: 'Content-Length and Transfer-Encoding', write: `HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n${EVIL}\r\n0\r\n\r\n`, expect: 502 },
  { name: 'two different Content-Lengths', write: `HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: ${2 + EVIL_RESPONSE.length}\r\n\r\nok${EVIL_RESPONSE}`, expect: 502 },
  { name: '204 with a body', write: `HTTP/1.1 204 No Content\r\nContent-Length: ${EVIL_RESPONSE.length}\r\n\r\n${EVIL_RESPONSE}`, expect: 204, body: '' },
  { name: '304 followed by a response', write: `HTTP/1.1 304 Not Modified\r\n\r\n${EVIL_RESPONSE}`, expect: 304, body: '' },
  { name: 'HEAD answered with a body', method: 'HEAD', write: `HTTP/1.1 200 OK\r\nContent-Length: ${EVIL_RESPONSE.length}\r\n\r\n${EVIL_RESPONSE}`, expect: 200, body: '' },
  { name: 'bad chunk size', write: `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+4\r\n${EVIL}\r\n0\r\n\r\n`, expect: 'cut' },
  { name: 'chunk size overflow', write: `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n${EVIL}\r\n0\r\n\r\n`, expect: 'cut' },
  { name: 'chunk data longer than its size', write: `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok${EVIL_RESPONSE}\r\n0\r\n\r\n`, expect: 'cut' },
  { name: 'obs-fold', write: `HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok`, expect: 502 },
  { name: 'bare LF', write: `HTTP/1.1 200 OK\nContent-Length: 2\n\nok`, expect: 502 },
  { name: 'control character in a header value', write: `HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 2\r\n\r\nok`, expect: 502 },
  { name: 'control character in the reason', write: `HTTP/1.1 200 O\x01K\r\nContent-Length: 2\r\n\r\nok`, expect: 502 },
  { name: 'unasked 101', write: `HTTP/1.1 101 Switching Protocols\r\nUpgrade: evil\r\nConnection: upgrade\r\n\r\n${EVIL_RESPONSE}`, expect: 502 },
];

describe('response desync through meshd', () => {
  let m: TestMeshd;
  let port: number;
  const sockets = new Set<net.Socket>();
  const timers = new Set<NodeJS.Timeout>();
  // Answers /case/<i> as RESPONSE_CASES[i] says and /own/<id> with its own id.
  const backend = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buf = '';
    socket.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      for (let end = buf.indexOf('\r\n\r\n'); end >= 0; end = buf.indexOf('\r\n\r\n')) {
        const path = buf.slice(buf.indexOf(' ') + 1, buf.indexOf(' ', buf.indexOf(' ') + 1));
        buf = buf.slice(end + 4);
        const own = /^\/own\/(.*)$/.exec(path);
        if (own) {
          socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${own[1]!.length}\r\n\r\n${own[1]}`);
          continue;
        }
        const c = RESPONSE_CASES[Number(/^\/case\/(\d+)$/.exec(path)?.[1])];
        if (!c) continue;
        socket.write(c.write, 'latin1');
        if (c.later) {
          const t = setTimeout(() => {
            timers.delete(t);
            if (!socket.destroyed) socket.write(c.later!, 'latin1');
          }, 30);
          timers.add(t);
        }
      }
    });
  });

  before(async () => {
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
    port = await freePort();
    m = await new TestMeshd().start([{ name: 'misbehaving', publish: port, mode: 'http', backends: [`127.0.0.1:${(backend.address() as net.AddressInfo).port}`] }], ['--health-interval', '5s']);
  });
  after(async () => {
    await m?.stop();
    for (const t of timers) clearTimeout(t);
    const closed = new Promise((r) => backend.close(r));
    for (const s of sockets) s.destroy();
    await closed;
  });

  RESPONSE_CASES.forEach((c, i) => {
    it(`${c.name}: ${c.expect === 'cut' ? 'cut off' : c.expect}, and no byte of it in any other answer`, async () => {
      const method = c.method ?? 'GET';
      const a = await RawClient.open(port);
      const b = await RawClient.open(port);
      try {
        a.send(r([`${method} /case/${i} HTTP/1.1`, HOST]), method);
        await a.read(1);
        if (c.expect === 'cut') {
          assert.ok(a.closed, 'the client connection is closed mid-response');
          assert.deepEqual(a.replies, [], 'no complete response');
        } else {
          assert.deepEqual(a.replies.map((x) => x.status), [c.expect]);
          if (c.body !== undefined) assert.equal(a.replies[0]!.body, c.body);
          if (c.expect === 502) assert.match(a.replies[0]!.headers.join('\n'), /x-meshd-error\nBACKEND_FAILED/i);
        }
        // Anything the backend sends later has arrived before the next requests.
        if (c.later) await new Promise((r) => setTimeout(r, 100));
        // Next requests, on the same keep-alive connection (when still open) and on another one: each gets its own answer.
        if (!a.closed) {
          a.send(r(['GET /own/same HTTP/1.1', HOST]));
          await a.read(2);
          assert.deepEqual(a.replies.slice(1).map((x) => [x.status, x.body]), [[200, 'same']], 'same connection');
        }
        b.send(r(['GET /own/other HTTP/1.1', HOST]));
        await b.read(1);
        assert.deepEqual(b.replies.map((x) => [x.status, x.body]), [[200, 'other']], 'other connection');
        assert.ok(!a.raw.includes(EVIL) && !b.raw.includes(EVIL), 'no byte of the bad response reached a client');
      } finally {
        a.close();
        b.close();
      }
    });
  });
});

// ---- The upstream pool, one connection, a request queued behind another ----

interface Answer { status: number; body: string; error?: string }

/** An exchange for meshd's upstream pool, and its answer once it ends or fails. */
function exchange(method: string, path: string, body: Readable | null = null, length = 0): { ex: Exchange; answer: Promise<Answer> } {
  let status = 0;
  let text = '';
  let settle!: (a: Answer) => void;
  const answer = new Promise<Answer>((r) => (settle = r));
  const sink: Sink = {
    onHead: (s) => { status = s; },
    onData: (c) => { text += c.toString('latin1'); return true; },
    onEnd: () => settle({ status, body: text }),
    onError: (err) => settle({ status, body: text, error: err.code }),
  };
  const head = `${method} ${path} HTTP/1.1\r\nhost: pool.test\r\n${body ? `content-length: ${length}\r\n` : ''}\r\n`;
  return { ex: { method, head, body, chunked: false, sink }, answer };
}

describe('upstream pool: a request queued behind a misbehaving response', () => {
  /** Path of each request the backend parsed, and the number of the connection it came on. */
  const seenOn = new Map<string, number>();
  const sockets = new Set<net.Socket>();
  let connections = 0;
  // Parses heads only (bodies are not read, as a server that answers early does): body bytes left on
  // a reused connection would be parsed as requests.
  const backend = net.createServer((socket) => {
    const id = ++connections;
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buf = '';
    socket.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      for (let end = buf.indexOf('\r\n\r\n'); end >= 0; end = buf.indexOf('\r\n\r\n')) {
        const path = buf.slice(buf.indexOf(' ') + 1, buf.indexOf(' ', buf.indexOf(' ') + 1));
        buf = buf.slice(end + 4);
        seenOn.set(path, id);
        if (path === '/stray') socket.write(`HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok${EVIL_RESPONSE}`);
        else if (path === '/early') socket.write('HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n');
        else socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${path.length}\r\n\r\n${path}`);
      }
    });
  });
  let pool: UpstreamPool;

  before(async () => {
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
    pool = new UpstreamPool({
      host: '127.0.0.1', port: (backend.address() as net.AddressInfo).port,
      connectTimeout: 2000, responseTimeout: 2000, maxConnections: 1, idleTimeout: 2000,
    });
  });
  after(async () => {
    pool.destroy();
    const closed = new Promise((r) => backend.close(r));
    for (const s of sockets) s.destroy();
    await closed;
  });

  it('does not hand bytes after a response to the request queued behind it', async () => {
    const first = exchange('GET', '/stray');
    const queued = exchange('GET', '/queued');
    pool.dispatch(first.ex);
    pool.dispatch(queued.ex);
    assert.deepEqual(await first.answer, { status: 200, body: 'ok' });
    assert.deepEqual(await queued.answer, { status: 200, body: '/queued' });
  });

  it('does not reuse a connection whose response came before the request body was sent', async () => {
    const body = new PassThrough();
    const smuggled = r(['GET /smuggled HTTP/1.1', HOST]);
    const early = exchange('POST', '/early', body, 4 + smuggled.length);
    const queued = exchange('GET', '/queued-2');
    pool.dispatch(early.ex);
    pool.dispatch(queued.ex);
    body.write('body');
    assert.deepEqual(await early.answer, { status: 413, body: '' });
    // The rest of the body, which a server that answered early would read as a request.
    body.end(smuggled);
    assert.deepEqual(await queued.answer, { status: 200, body: '/queued-2' });
    assert.notEqual(seenOn.get('/queued-2'), seenOn.get('/early'), 'the queued request went on another connection');
    assert.ok(!seenOn.has('/smuggled'), 'the body never reached the backend as a request');
  });
});
