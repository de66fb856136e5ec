// meshd's upstream response parser against RFC 9112 (§4 status line, §5 field
// syntax, §6 message body, §7 chunked coding), against node's own parser
// (llhttp) on generated responses split anywhere, and on the ways a backend can
// frame a response wrongly.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ResponseParser } from '../../src/proxy/response-parser.js';
import { LlhttpResponses } from '../support/llhttp.js';

interface Message { status: number; reason: string; headers: string[]; body: string; keepAlive: boolean }
interface Outcome {
  messages: Message[];
  error: string | undefined;
  /** The close came mid-response. */
  truncated: boolean;
}

/** Feeds `chunks` to meshd's parser for requests with these methods, then (if `close`) the peer's close. */
function meshd(chunks: Buffer[], methods: string[], close = true): Outcome {
  const out: Outcome = { messages: [], error: undefined, truncated: false };
  let current: Message | undefined;
  let body: Buffer[] = [];
  let next = 0;
  const parser = new ResponseParser({
    onHead: (status, reason, headers) => {
      current = { status, reason, headers, body: '', keepAlive: false };
    },
    onData: (chunk) => {
      body.push(Buffer.from(chunk));
    },
    onEnd: (keepAlive) => {
      out.messages.push({ ...current!, body: Buffer.concat(body).toString('latin1'), keepAlive });
      current = undefined;
      body = [];
      if (next < methods.length) parser.expect(methods[next++]!);
    },
    onError: (message) => {
      out.error = message;
    },
  });
  if (methods.length) parser.expect(methods[next++]!);
  for (const c of chunks) parser.execute(c);
  if (close && out.error === undefined && !parser.finish()) out.truncated = true;
  return out;
}

function llhttp(chunks: Buffer[], methods: string[]): Outcome {
  const p = new LlhttpResponses(methods);
  for (const c of chunks) p.execute(c);
  p.finish();
  return { messages: p.messages, error: p.error, truncated: false };
}

/** `wire` split at the given offsets (taken modulo its length). */
function split(wire: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => c % (wire.length + 1)))].sort((a, b) => a - b);
  const parts: Buffer[] = [];
  let prev = 0;
  for (const c of [...at, wire.length]) {
    parts.push(wire.subarray(prev, c));
    prev = c;
  }
  return parts;
}

// ---- Generated valid responses ----

const TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const VCHAR = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i)).join('') + '\x80\xa0\xe9\xff';
/** Names with framing or connection meaning are generated on purpose, not at random. */
const SPECIAL = new Set(['content-length', 'transfer-encoding', 'connection', 'proxy-connection', 'upgrade', 'keep-alive']);

const token = fc.string({ unit: fc.constantFrom(...TCHAR), minLength: 1, maxLength: 12 });
const fieldName = token.filter((n) => !SPECIAL.has(n.toLowerCase()));
// A field value: visible characters with single spaces or tabs inside, none at the ends.
const fieldValue = fc.array(fc.string({ unit: fc.constantFrom(...VCHAR), minLength: 1, maxLength: 8 }), { maxLength: 4 })
  .chain((words) => fc.array(fc.constantFrom(' ', '\t', '  '), { minLength: words.length, maxLength: words.length })
    .map((gaps) => words.map((w, i) => (i ? gaps[i]! : '') + w).join('')));
const ows = fc.constantFrom('', ' ', '\t', ' \t ');
const field = fc.record({ name: fieldName, value: fieldValue, before: ows, after: ows });
const reason = fc.option(fc.string({ unit: fc.constantFrom(...VCHAR, ' ', '\t'), maxLength: 20 }).filter((r) => !/^[ \t]|[ \t]$/.test(r)), { nil: undefined });
const bodyBytes = fc.uint8Array({ maxLength: 200 }).map((u) => Buffer.from(u).toString('latin1'));

interface Chunk { data: string; hex: string; ext: string }
const chunkExt = fc.oneof(
  fc.constant(''),
  fc.tuple(token, token).map(([n, v]) => `;${n}=${v}`),
  fc.tuple(token, fc.string({ unit: fc.constantFrom('a', ' ', '\t', '!', '\\"', '\\\\'), maxLength: 6 })).map(([n, v]) => `;${n}="${v}"`),
  token.map((n) => `;${n}`),
);

/** The body cut into chunks, each with a size in upper or lower case, leading zeros, and perhaps extensions. */
function chunksOf(body: string): fc.Arbitrary<Chunk[]> {
  return fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 8 }).chain((sizes) => {
    const parts: string[] = [];
    let at = 0;
    for (const s of sizes) {
      if (at >= body.length) break;
      parts.push(body.slice(at, at + s));
      at += s;
    }
    if (at < body.length) parts.push(body.slice(at));
    return fc.tuple(...parts.map((data) => fc.record({
      upper: fc.boolean(),
      zeros: fc.integer({ min: 0, max: 3 }),
      ext: chunkExt,
    }).map(({ upper, zeros, ext }) => {
      const hex = '0'.repeat(zeros) + data.length.toString(16);
      return { data, hex: upper ? hex.toUpperCase() : hex, ext };
    })));
  });
}

type Framing = 'length' | 'chunked' | 'close' | 'none';
interface Model {
  method: 'GET' | 'HEAD';
  version: '1.0' | '1.1';
  status: number;
  reason: string | undefined;
  fields: { name: string; value: string; before: string; after: string }[];
  connection: 'close' | 'keep-alive' | undefined;
  framing: Framing;
  /** What the body is on the wire for `length` and `close`; the chunks' data for `chunked`. */
  body: string;
  chunks: Chunk[];
  lastExt: string;
  trailers: { name: string; value: string; before: string; after: string }[];
  interim: number | undefined;
}

const model: fc.Arbitrary<Model> = fc.record({
  method: fc.constantFrom('GET' as const, 'GET' as const, 'HEAD' as const),
  version: fc.constantFrom('1.1' as const, '1.1' as const, '1.0' as const),
  status: fc.oneof(fc.integer({ min: 200, max: 599 }), fc.constantFrom(200, 204, 304, 404)),
  reason,
  fields: fc.array(field, { maxLength: 6 }),
  connection: fc.constantFrom(undefined, 'close' as const, 'keep-alive' as const),
  framing: fc.constantFrom('length' as const, 'chunked' as const, 'close' as const),
  body: bodyBytes,
  lastExt: chunkExt,
  trailers: fc.array(field, { maxLength: 3 }),
  interim: fc.constantFrom(undefined, 100, 103),
}).chain((m) => chunksOf(m.body).map((chunks): Model => {
  let framing: Framing = m.framing;
  // Chunked is HTTP/1.1's; a response to HEAD, a 204 or a 304 has no body whatever its headers say.
  if (framing === 'chunked' && m.version === '1.0') framing = 'length';
  const bodiless = m.method === 'HEAD' || m.status === 204 || m.status === 304;
  if (bodiless && framing === 'close') framing = 'none';
  return { ...m, framing, chunks };
}));

function serialise(m: Model): string {
  let s = m.interim ? `HTTP/1.1 ${m.interim} Interim\r\nX-Interim: 1\r\n\r\n` : '';
  s += `HTTP/${m.version} ${m.status}${m.reason === undefined ? '' : ` ${m.reason}`}\r\n`;
  for (const f of m.fields) s += `${f.name}:${f.before}${f.value}${f.after}\r\n`;
  if (m.connection) s += `Connection: ${m.connection}\r\n`;
  const bodiless = m.method === 'HEAD' || m.status === 204 || m.status === 304;
  if (m.framing === 'length') s += `Content-Length: ${m.body.length}\r\n`;
  if (m.framing === 'chunked') s += 'Transfer-Encoding: chunked\r\n';
  s += '\r\n';
  if (bodiless) return s;
  if (m.framing === 'chunked') {
    for (const c of m.chunks) s += `${c.hex}${c.ext}\r\n${c.data}\r\n`;
    s += `0${m.lastExt}\r\n`;
    for (const t of m.trailers) s += `${t.name}:${t.before}${t.value}${t.after}\r\n`;
    return s + '\r\n';
  }
  return s + m.body;
}

/** What a response to `m` must parse to, read off the model, not off either parser. */
function expected(m: Model): Pick<Message, 'status' | 'body' | 'keepAlive'> {
  const bodiless = m.method === 'HEAD' || m.status === 204 || m.status === 304;
  const persistent = m.version === '1.1' ? m.connection !== 'close' : m.connection === 'keep-alive';
  return { status: m.status, body: bodiless ? '' : m.body, keepAlive: persistent && m.framing !== 'close' };
}

/** llhttp decides keep-alive before it knows a response answers HEAD, so that one is read off the model. */
const framing = (x: Message) => ({ status: x.status, reason: x.reason, headers: x.headers, body: x.body });

const cuts = fc.array(fc.nat(), { maxLength: 6 });

describe('upstream response parser: generated valid responses', () => {
  it('parses any valid response, split anywhere, as node’s own parser does and as it was built', () => {
    fc.assert(fc.property(model, cuts, (m, at) => {
      const wire = Buffer.from(serialise(m), 'latin1');
      const ours = meshd(split(wire, at), [m.method]);
      const node = llhttp([wire], [m.method]);
      assert.equal(node.error, undefined, `node rejects the generated response: ${node.error}`);
      assert.equal(ours.error, undefined);
      assert.equal(ours.truncated, false);
      assert.equal(ours.messages.length, 1);
      const [mine, theirs] = [ours.messages[0]!, node.messages[0]!];
      assert.deepEqual({ status: mine.status, body: mine.body, keepAlive: mine.keepAlive }, expected(m));
      assert.deepEqual(framing(mine), framing(theirs));
    }), { numRuns: 400 });
  });

  it('parses responses back to back on one connection, split anywhere', () => {
    // Only a persistent connection carries another response; close-delimited framing can only end the last one.
    const framed = model.filter((m) => expected(m).keepAlive);
    fc.assert(fc.property(fc.array(framed, { minLength: 2, maxLength: 4 }), model, cuts, (first, last, at) => {
      const all = [...first, last];
      const wire = Buffer.from(all.map(serialise).join(''), 'latin1');
      const methods = all.map((m) => m.method);
      const ours = meshd(split(wire, at), methods);
      const node = llhttp([wire], methods);
      assert.equal(node.error, undefined, `node rejects the generated responses: ${node.error}`);
      assert.equal(ours.error, undefined);
      assert.deepEqual(ours.messages.map((x) => ({ status: x.status, body: x.body })), all.map((m) => ({ status: m.status, body: expected(m).body })));
      assert.deepEqual(ours.messages.map(framing), node.messages.map(framing));
      assert.equal(ours.messages.at(-1)!.keepAlive, expected(last).keepAlive);
      // Bytes followed each of the others in the same read (unless a read ended right there): meshd would not reuse the connection.
      const cutAt = new Set(at.map((c) => c % (wire.length + 1)));
      let end = 0;
      all.slice(0, -1).forEach((m, i) => {
        end += Buffer.byteLength(serialise(m), 'latin1');
        assert.equal(ours.messages[i]!.keepAlive, cutAt.has(end));
      });
    }), { numRuns: 200 });
  });
});

// ---- Generated invalid responses ----

/** A valid chunked response with one defect put in; the defect is the point. */
interface Defect { name: string; wire: (m: Model) => string }
const headOf = (m: Model, extra: string) => `HTTP/1.1 ${m.status === 204 || m.status === 304 ? 200 : m.status} OK\r\n${m.fields.map((f) => `${f.name}: ${f.value}\r\n`).join('')}${extra}\r\n`;
const chunkedBody = (m: Model) => m.chunks.map((c) => `${c.hex}\r\n${c.data}\r\n`).join('') + '0\r\n\r\n';
const DEFECTS: Defect[] = [
  { name: 'two different Content-Lengths', wire: (m) => headOf(m, `Content-Length: ${m.body.length}\r\nContent-Length: ${m.body.length + 13}\r\n`) + m.body + 'x'.repeat(13) },
  { name: 'Content-Length list of different values', wire: (m) => headOf(m, `Content-Length: ${m.body.length}, ${m.body.length + 1}\r\n`) + m.body + 'x' },
  { name: 'Transfer-Encoding with Content-Length', wire: (m) => headOf(m, `Content-Length: ${m.body.length}\r\nTransfer-Encoding: chunked\r\n`) + chunkedBody(m) },
  { name: 'chunked twice', wire: (m) => headOf(m, 'Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n') + chunkedBody(m) },
  { name: 'chunked not last', wire: (m) => headOf(m, 'Transfer-Encoding: chunked, gzip\r\n') + chunkedBody(m) },
  { name: 'signed or prefixed Content-Length', wire: (m) => headOf(m, `Content-Length: ${['+', '-', '0x', ' +'][m.body.length % 4]}${m.body.length}\r\n`) + m.body },
  { name: 'Content-Length beyond 2^53', wire: (m) => headOf(m, `Content-Length: 9007199254740993${m.body.length}\r\n`) + m.body },
  { name: 'chunk size not bare hex', wire: (m) => headOf(m, 'Transfer-Encoding: chunked\r\n') + `${['0x', '+', ' ', '-'][m.body.length % 4]}${(m.body.length + 1).toString(16)}\r\n${m.body}x\r\n0\r\n\r\n` },
  { name: 'chunk size of 17 hex digits', wire: (m) => headOf(m, 'Transfer-Encoding: chunked\r\n') + `1${'0'.repeat(15)}${(m.body.length % 16).toString(16)}\r\n${m.body}\r\n0\r\n\r\n` },
  { name: 'no CRLF after chunk data', wire: (m) => headOf(m, 'Transfer-Encoding: chunked\r\n') + `${(m.body.length + 1).toString(16)}\r\n${m.body}x${['XY', '\n0', '\r0', '\nX'][m.body.length % 4]}\r\n0\r\n\r\n` },
  { name: 'bare LF ending a head line', wire: (m) => headOf(m, `X-A: 1\nContent-Length: ${m.body.length}\r\n`) + m.body },
  { name: 'bare LF ending the status line', wire: (m) => `HTTP/1.1 200 OK\nContent-Length: ${m.body.length}\r\n\r\n${m.body}` },
  { name: 'bare LF after a chunk size', wire: (m) => headOf(m, 'Transfer-Encoding: chunked\r\n') + `${(m.body.length + 1).toString(16)}\n${m.body}x\r\n0\r\n\r\n` },
  { name: 'obs-fold', wire: (m) => headOf(m, `X-Folded: a\r\n ${m.fields[0]?.value ?? 'b'}\r\nContent-Length: ${m.body.length}\r\n`) + m.body },
  { name: 'whitespace before the colon', wire: (m) => headOf(m, `Content-Length${['  ', '\t', ' '][m.body.length % 3]}: ${m.body.length}\r\n`) + m.body },
  { name: 'header name not a token', wire: (m) => headOf(m, `X${['(', '@', '"', '\x01'][m.body.length % 4]}y: 1\r\nContent-Length: ${m.body.length}\r\n`) + m.body },
  { name: 'control character in a header value', wire: (m) => headOf(m, `X-Ctl: a${['\x00', '\x01', '\x7f', '\x1b'][m.body.length % 4]}b\r\nContent-Length: ${m.body.length}\r\n`) + m.body },
  { name: 'bad trailer line', wire: (m) => headOf(m, 'Transfer-Encoding: chunked\r\n') + chunkedBody(m).slice(0, -2) + ['no colon', ' folded: x', 'T : x', 'T: \x00'][m.body.length % 4] + '\r\n\r\n' },
  { name: 'malformed status line', wire: (m) => `${['HTTP/1.1 2000 OK', 'HTTP/2.0 200 OK', 'http/1.1 200 OK', 'HTTP/1.1 20 OK', 'HTTP/1.1 099 OK', 'HTTP/1.1  200 OK', 'HTTP/1.1 200 O\x01K'][m.body.length % 7]}\r\nContent-Length: ${m.body.length}\r\n\r\n${m.body}` },
  { name: 'unasked 101', wire: (m) => `HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: ${m.body.length}\r\n\r\n${m.body}` },
];

describe('upstream response parser: generated invalid responses', () => {
  for (const d of DEFECTS) {
    it(`ends in an error, never a delivered response: ${d.name}`, () => {
      const get = model.map((m): Model => ({ ...m, method: 'GET' }));
      fc.assert(fc.property(get, cuts, (m, at) => {
        const ours = meshd(split(Buffer.from(d.wire(m), 'latin1'), at), ['GET']);
        assert.deepEqual(ours.messages, [], 'no response delivered as complete');
        assert.ok(ours.error !== undefined, 'an error');
      }), { numRuns: 60 });
    });
  }
});

// ---- One case per defect class ----

interface Case {
  name: string;
  wire: string;
  method?: string;
  /** `error`: the parser must fail; else what it must deliver. */
  want: 'error' | { status: number; body: string; keepAlive: boolean; headers?: string[]; reason?: string };
  /** Bytes follow the response: with no request to answer, they are an error of their own. */
  trailing?: true;
}

const CASES: Case[] = [
  // Status line (RFC 9112 §4)
  { name: 'no reason phrase', wire: 'HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok', want: { status: 200, reason: '', body: 'ok', keepAlive: true } },
  { name: 'empty reason phrase', wire: 'HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nok', want: { status: 200, reason: '', body: 'ok', keepAlive: true } },
  { name: 'four-digit status', wire: 'HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok', want: 'error' },
  { name: 'HTTP/2.0', wire: 'HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok', want: 'error' },
  { name: 'lower-case version', wire: 'http/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok', want: 'error' },
  { name: 'status below 100', wire: 'HTTP/1.1 099 OK\r\nContent-Length: 2\r\n\r\nok', want: 'error' },
  { name: 'status above 599', wire: 'HTTP/1.1 600 OK\r\nContent-Length: 2\r\n\r\nok', want: 'error' },
  { name: 'control character in the reason', wire: 'HTTP/1.1 200 O\x01K\r\nContent-Length: 2\r\n\r\nok', want: 'error' },
  { name: 'bare LF after the status line', wire: 'HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nok', want: 'error' },
  { name: 'bare LF everywhere', wire: 'HTTP/1.1 200 OK\nContent-Length: 2\n\nok', want: 'error' },
  // Field syntax (RFC 9112 §5)
  { name: 'obs-fold', wire: 'HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok', want: 'error' },
  { name: 'obs-fold with a tab', wire: 'HTTP/1.1 200 OK\r\nX-A: a\r\n\tb\r\nContent-Length: 2\r\n\r\nok', want: 'error' },
  { name: 'space before the colon', wire: 'HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok', want: 'error' },
  { name: 'name not a token', wire: 'HTTP/1.1 200 OK\r\nX[a]: 1\r\nContent-Length: 2\r\n\r\nok', want: 'error' },
  { name: 'empty name', wire: 'HTTP/1.1 200 OK\r\n: 1\r\nContent-Length: 2\r\n\r\nok', want: 'error' },
  { name: 'NUL in a value', wire: 'HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok', want: 'error' },
  { name: 'bare CR in a value', wire: 'HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 2\r\n\r\nok', want: 'error' },
  { name: 'bare LF inside the head', wire: 'HTTP/1.1 200 OK\r\nX-A: a\nContent-Length: 2\r\n\r\nok', want: 'error' },
  { name: 'OWS trimmed, inner spaces kept, obs-text kept', wire: 'HTTP/1.1 200 OK\r\nX-A: \t a \t b\xa0 \t\r\nContent-Length: 2\r\n\r\nok', want: { status: 200, body: 'ok', keepAlive: true, headers: ['X-A', 'a \t b\xa0', 'Content-Length', '2'] } },
  // Content-Length (RFC 9112 §6.3, RFC 9110 §8.6)
  { name: 'two different Content-Lengths', wire: 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 18\r\n\r\nhellohellohellohel', want: 'error' },
  { name: 'two identical Content-Lengths', wire: 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello', want: { status: 200, body: 'hello', keepAlive: true, headers: ['Content-Length', '5'] } },
  { name: 'a list of identical Content-Lengths', wire: 'HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello', want: { status: 200, body: 'hello', keepAlive: true, headers: ['Content-Length', '5'] } },
  { name: 'a list of different Content-Lengths', wire: 'HTTP/1.1 200 OK\r\nContent-Length: 5, 7\r\n\r\nhello!!', want: 'error' },
  { name: 'Content-Length +5', wire: 'HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello', want: 'error' },
  { name: 'Content-Length -1', wire: 'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nhello', want: 'error' },
  { name: 'Content-Length 0x5', wire: 'HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\nhello', want: 'error' },
  { name: 'Content-Length 5 5', wire: 'HTTP/1.1 200 OK\r\nContent-Length: 5 5\r\n\r\nhello', want: 'error' },
  { name: 'Content-Length 5.0', wire: 'HTTP/1.1 200 OK\r\nContent-Length: 5.0\r\n\r\nhello', want: 'error' },
  { name: 'empty Content-Length', wire: 'HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\nhello', want: 'error' },
  { name: 'Content-Length beyond 2^53', wire: 'HTTP/1.1 200 OK\r\nContent-Length: 9007199254740993\r\n\r\nhello', want: 'error' },
  { name: 'Content-Length 1e3', wire: 'HTTP/1.1 200 OK\r\nContent-Length: 1e1\r\n\r\nhellohello', want: 'error' },
  // Transfer-Encoding (RFC 9112 §6.1, §6.3)
  { name: 'Transfer-Encoding and Content-Length', wire: 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n', want: 'error' },
  { name: 'Content-Length after Transfer-Encoding', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n', want: 'error' },
  { name: 'xchunked is not chunked', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n', want: 'error' },
  // meshd drops Transfer-Encoding towards its client, so a coding other than chunked would arrive undeclared.
  { name: 'gzip alone', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n\x1f\x8bdata', want: 'error' },
  { name: 'gzip, chunked', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n', want: 'error' },
  { name: 'CHUNKED in capitals', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\n\r\n2\r\nab\r\n0\r\n\r\n', want: { status: 200, body: 'ab', keepAlive: true } },
  { name: 'chunked, chunked', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n', want: 'error' },
  { name: 'two chunked headers', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n', want: 'error' },
  { name: 'chunked, gzip', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n2\r\nab\r\n0\r\n\r\n', want: 'error' },
  { name: 'chunked then a gzip header', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n2\r\nab\r\n0\r\n\r\n', want: 'error' },
  { name: 'empty Transfer-Encoding', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\nContent-Length: 2\r\n\r\nok', want: 'error' },
  { name: 'Transfer-Encoding in HTTP/1.0', wire: 'HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n', want: 'error' },
  { name: 'coding not a token', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chun ked\r\n\r\n2\r\nab\r\n0\r\n\r\n', want: 'error' },
  // Chunked coding (RFC 9112 §7.1)
  { name: 'chunk extensions are ignored', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n1;a;b="q \\" v"\r\n!\r\n0;last\r\n\r\n', want: { status: 200, body: 'hello!', keepAlive: true } },
  { name: 'chunk size 0x10', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x10\r\n0123456789abcdef\r\n0\r\n\r\n', want: 'error' },
  { name: 'chunk size +5', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n', want: 'error' },
  { name: 'chunk size with a leading space', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n', want: 'error' },
  { name: 'chunk size -1', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nhello\r\n0\r\n\r\n', want: 'error' },
  { name: 'chunk size with trailing garbage', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5x\r\nhello\r\n0\r\n\r\n', want: 'error' },
  { name: 'empty chunk size', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n', want: 'error' },
  { name: 'chunk size of 18 hex digits', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n', want: 'error' },
  { name: 'chunk size beyond 2^53', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n20000000000000\r\nhello\r\n0\r\n\r\n', want: 'error' },
  { name: 'bad chunk extension', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a b\r\nhello\r\n0\r\n\r\n', want: 'error' },
  { name: 'two bytes but not CRLF after chunk data', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXY0\r\n\r\n', want: 'error' },
  { name: 'chunk data longer than its size', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n', want: 'error' },
  { name: 'bare LF after the chunk size', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n', want: 'error' },
  { name: 'trailers are read and dropped', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n', want: { status: 200, body: 'ab', keepAlive: true } },
  { name: 'trailer line without a colon', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nnot a field\r\n\r\n', want: 'error' },
  { name: 'obs-folded trailer', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nX-T: 1\r\n 2\r\n\r\n', want: 'error' },
  { name: 'bare LF in trailers', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nX-T: 1\n\r\n', want: 'error' },
  // Interim responses (RFC 9110 §15.2)
  { name: '100 then the response', wire: 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok', want: { status: 200, body: 'ok', keepAlive: true } },
  { name: '103 with headers then the response', wire: 'HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok', want: { status: 200, body: 'ok', keepAlive: true, headers: ['Content-Length', '2'] } },
  { name: 'unasked 101', wire: 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\nbytes of another protocol', want: 'error' },
  { name: 'malformed 100', wire: 'HTTP/1.1 100 Continue\r\nbad line\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok', want: 'error' },
  // No body whatever the headers say (RFC 9112 §6.3)
  { name: 'HEAD with Content-Length', method: 'HEAD', wire: 'HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n', want: { status: 200, body: '', keepAlive: true } },
  { name: 'HEAD, then bytes', method: 'HEAD', wire: 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello', want: { status: 200, body: '', keepAlive: false }, trailing: true },
  { name: '204 with Content-Length, then bytes', wire: 'HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello', want: { status: 204, body: '', keepAlive: false }, trailing: true },
  { name: '304, then bytes', wire: 'HTTP/1.1 304 Not Modified\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', want: { status: 304, body: '', keepAlive: false }, trailing: true },
  { name: '204 alone', wire: 'HTTP/1.1 204 No Content\r\n\r\n', want: { status: 204, body: '', keepAlive: true } },
  // Connection and the end of a response
  { name: 'bytes after a Content-Length body', wire: 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil', want: { status: 200, body: 'ok', keepAlive: false }, trailing: true },
  { name: 'bytes after a chunked body', wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nX', want: { status: 200, body: 'ok', keepAlive: false }, trailing: true },
  { name: 'Connection: close', wire: 'HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok', want: { status: 200, body: 'ok', keepAlive: false } },
  { name: 'close among other tokens', wire: 'HTTP/1.1 200 OK\r\nConnection: x-a, Close\r\nContent-Length: 2\r\n\r\nok', want: { status: 200, body: 'ok', keepAlive: false } },
  { name: 'a token that only contains close', wire: 'HTTP/1.1 200 OK\r\nConnection: x-closed\r\nContent-Length: 2\r\n\r\nok', want: { status: 200, body: 'ok', keepAlive: true } },
  { name: 'HTTP/1.0 without keep-alive', wire: 'HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok', want: { status: 200, body: 'ok', keepAlive: false } },
  { name: 'HTTP/1.0 with keep-alive', wire: 'HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok', want: { status: 200, body: 'ok', keepAlive: true } },
  { name: 'close-delimited', wire: 'HTTP/1.1 200 OK\r\n\r\nall of it', want: { status: 200, body: 'all of it', keepAlive: false } },
];

/** A Buffer with memory of its own (small Buffer.from ones share a pool with Buffer.concat's copies). */
function unpooled(s: string): Buffer {
  const b = Buffer.alloc(s.length);
  b.write(s, 'latin1');
  return b;
}

describe('upstream response parser: one case per defect class', () => {
  for (const c of CASES) {
    it(c.name, () => {
      // Whole, and one byte at a time: framing must not depend on how reads fall.
      const wire = Buffer.from(c.wire, 'latin1');
      for (const chunks of [[wire], [...wire].map((b) => Buffer.from([b]))]) {
        const out = meshd(chunks, [c.method ?? 'GET']);
        if (c.want === 'error') {
          assert.ok(out.error !== undefined, `an error, got ${JSON.stringify(out.messages)}`);
          assert.deepEqual(out.messages, [], 'nothing delivered as complete');
          continue;
        }
        assert.equal(out.error !== undefined, c.trailing === true, `error: ${out.error}`);
        assert.equal(out.messages.length, 1);
        const got = out.messages[0]!;
        // Bytes in a later read look like the next response's; the parser sees them only as bytes while none is due.
        const keepAlive = c.trailing && chunks.length > 1 ? true : c.want.keepAlive;
        assert.deepEqual([got.status, got.body, got.keepAlive], [c.want.status, c.want.body, keepAlive]);
        if (c.want.headers) assert.deepEqual(got.headers, c.want.headers);
        if (c.want.reason !== undefined) assert.equal(got.reason, c.want.reason);
      }
    });
  }

  it('fails on bytes while no response is due', () => {
    const out = meshd([Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')], []);
    assert.ok(out.error !== undefined);
    assert.deepEqual(out.messages, []);
  });

  it('reports a close mid-body as cut short, and a close-delimited body as ended', () => {
    assert.equal(meshd([Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel')], ['GET']).truncated, true);
    assert.equal(meshd([Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel')], ['GET']).truncated, true);
    assert.equal(meshd([Buffer.from('HTTP/1.1 200 OK\r\n\r\nhel')], ['GET']).truncated, false);
  });

  it('hands body bytes on as views of the input, not copies', () => {
    const wire = unpooled('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello');
    const seen: Buffer[] = [];
    const p = new ResponseParser({ onHead: () => {}, onData: (c) => seen.push(c), onEnd: () => {}, onError: (m) => assert.fail(m) });
    p.expect('GET');
    p.execute(wire);
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.buffer, wire.buffer, 'same memory');
  });

  it('copies no body bytes when a head or chunk-size line is split across reads', () => {
    // [first read, second read, body bytes that come in the second read]
    for (const [first, second, fromSecond] of [
      ['HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r', '\nhello', 'hello'],
      ['HTTP/1.1 200 OK\r\nContent-Length: 5\r\n', '\r\nhello', 'hello'],
      ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5', '\r\nhello\r\n0\r\n\r\n', 'hello'],
      ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r', '\n3\r\ncde\r\n0\r\n\r\n', 'cde'],
    ] as const) {
      const input = unpooled(second);
      const seen: Buffer[] = [];
      const p = new ResponseParser({ onHead: () => {}, onData: (c) => seen.push(c), onEnd: () => {}, onError: (m) => assert.fail(m) });
      p.expect('GET');
      p.execute(Buffer.from(first));
      p.execute(input);
      assert.equal(seen.filter((c) => c.buffer === input.buffer).join(''), fromSecond, JSON.stringify(first));
    }
  });

  it('refuses a head larger than 64 KiB, before its end arrives', () => {
    const out = meshd([Buffer.from('HTTP/1.1 200 OK\r\n'), Buffer.from(`X-Big: ${'a'.repeat(70_000)}`)], ['GET'], false);
    assert.ok(out.error !== undefined);
  });
});
