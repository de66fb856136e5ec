// Cleartext HTTP/2 to a backend (routes with backend h2c; gRPC servers speak
// nothing else): node's http2 client, one session per backend carrying many
// streams, opened anew once it goes away. Streams beyond the backend's
// SETTINGS_MAX_CONCURRENT_STREAMS wait in a queue for one to close.
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import type { Readable } from 'node:stream';
import type { Backend, Closable } from '../table/table.js';
import type { ProxyContext } from './context.js';
import type { Sink } from './upstream.js';

const { NGHTTP2_CANCEL, NGHTTP2_FLAG_END_STREAM, NGHTTP2_NO_ERROR } = http2.constants;

/** Fields HTTP/2 forbids in a request (RFC 9113 §8.2.2); host becomes :authority, and te is added back as "trailers" only. */
const NOT_H2 = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings', 'te', 'host']);

export interface H2cExchange {
  headers: http2.OutgoingHttpHeaders;
  body: Readable | null;
  /** The request's trailers, asked for once its body has ended. */
  trailers: () => http2.OutgoingHttpHeaders | undefined;
  sink: Sink;
}

export interface H2cOptions {
  host: string;
  port: number;
  connectTimeout: number;
  responseTimeout: number;
  idleTimeout: number;
}

/** Flat header pairs as an HTTP/2 header object; repeats become lists (cookies are joined, RFC 9113 §8.2.3). */
export function headerObject(pairs: string[], into: http2.OutgoingHttpHeaders = {}): http2.OutgoingHttpHeaders {
  for (let i = 0; i < pairs.length; i += 2) {
    const name = pairs[i]!.toLowerCase();
    if (NOT_H2.has(name)) continue;
    const value = pairs[i + 1]!;
    const prev = into[name];
    if (prev === undefined) into[name] = value;
    else if (name === 'cookie') into[name] = `${String(prev)}; ${value}`;
    else into[name] = Array.isArray(prev) ? [...prev, value] : [String(prev), value];
  }
  return into;
}

/**
 * The backend's request: pseudo-headers, then the forwarded fields (already
 * without hop-by-hop ones and with X-Forwarded-*), and `te: trailers` when the
 * client asked for trailers (gRPC servers refuse a call without it).
 */
export function h2cRequestHeaders(method: string, target: string, authority: string, pairs: string[], te: boolean): http2.OutgoingHttpHeaders {
  // An absolute-form target (HTTP/1.1 proxies' style) names the same authority; HTTP/2 wants the path alone.
  let path = target;
  if (!path.startsWith('/') && path !== '*') {
    const u = new URL(target);
    path = u.pathname + u.search;
  }
  const out = headerObject(pairs, { ':method': method, ':scheme': 'http', ':authority': authority, ':path': path });
  if (te) out.te = 'trailers';
  return out;
}

function codeError(message: string, code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code });
}

/** Raw header pairs without the pseudo-headers. */
function fields(raw: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.charCodeAt(0) !== 58 /* : */) out.push(raw[i]!, raw[i + 1]!);
  return out;
}

class Session {
  readonly session: http2.ClientHttp2Session;
  /** The backend's SETTINGS arrived: streams may start, within its limit. */
  ready = false;
  open = 0;

  constructor(readonly pool: H2cPool) {
    const o = pool.options;
    const host = o.host.includes(':') ? `[${o.host}]` : o.host;
    this.session = http2.connect(`http://${host}:${o.port}`, {
      createConnection: () => net.connect({ host: o.host, port: o.port, noDelay: true }),
      settings: { enablePush: false },
    });
    const s = this.session;
    // Until its SETTINGS, a backend has not shown it speaks HTTP/2 at all.
    const timer = setTimeout(() => s.destroy(codeError('connect timeout', 'ETIMEDOUT')), o.connectTimeout);
    s.on('remoteSettings', () => {
      clearTimeout(timer);
      this.ready = true;
      pool.drain();
    });
    s.on('error', (err: NodeJS.ErrnoException) => pool.lost(this, err));
    // A GOAWAY takes no new streams; those open finish, and the next request opens a new session.
    s.on('goaway', () => pool.lost(this));
    s.on('close', () => {
      clearTimeout(timer);
      pool.lost(this, codeError('backend closed the connection', 'ECONNRESET'));
    });
    s.setTimeout(o.idleTimeout, () => {
      if (this.open === 0) s.close();
    });
  }

  get full(): boolean {
    return this.open >= (this.session.remoteSettings.maxConcurrentStreams ?? Infinity);
  }
}

/** A request waiting for, or on, a stream. */
interface Call {
  ex: H2cExchange;
  stream?: http2.ClientHttp2Stream;
  cancelled?: boolean;
}

export class H2cPool implements Closable {
  #current: Session | undefined;
  readonly #queue: Call[] = [];
  #closing = false;

  constructor(readonly options: H2cOptions) {}

  /** Sends a request on the backend's session (opened if need be) or queues it; returns a way to cancel it. */
  dispatch(ex: H2cExchange): () => void {
    const call: Call = { ex };
    this.#queue.push(call);
    this.drain();
    return () => this.#cancel(call);
  }

  /** Starts queued requests while the session takes more streams; closes it once drained on close(). */
  drain(): void {
    const q = this.#queue;
    if (q.length === 0) {
      if (this.#closing && this.#current?.open === 0) this.#current.session.close();
      return;
    }
    if (!this.#current) {
      if (this.#closing) return this.#failQueue(codeError('backend removed', 'ECONNRESET'));
      this.#current = new Session(this);
    }
    const s = this.#current;
    while (s.ready && q.length && !s.full && this.#current === s) this.#start(s, q.shift()!);
  }

  /** A session failed or went away: requests it never started go to a new one, or fail with its error if it never came up. */
  lost(s: Session, err?: NodeJS.ErrnoException): void {
    if (this.#current !== s) return;
    this.#current = undefined;
    if (!s.ready && err) return this.#failQueue(err);
    this.drain();
  }

  #failQueue(err: NodeJS.ErrnoException): void {
    for (const call of this.#queue.splice(0)) call.ex.sink.onError(err, false);
  }

  #cancel(call: Call): void {
    if (call.cancelled) return;
    call.cancelled = true;
    if (call.stream) return void call.stream.close(NGHTTP2_CANCEL);
    const i = this.#queue.indexOf(call);
    if (i >= 0) this.#queue.splice(i, 1);
  }

  #start(s: Session, call: Call): void {
    const { ex } = call;
    const { sink, body } = ex;
    let stream: http2.ClientHttp2Stream;
    try {
      stream = s.session.request(ex.headers, { endStream: !body, waitForTrailers: !!body });
    } catch (err) {
      return sink.onError(err as NodeJS.ErrnoException, false);
    }
    call.stream = stream;
    s.open++;
    let sent = false;
    let ended = false;
    let failure: NodeJS.ErrnoException | undefined;
    const timer = setTimeout(() => {
      failure = codeError('no response head in time', 'HEADERS_TIMEOUT');
      stream.close(NGHTTP2_CANCEL);
    }, this.options.responseTimeout);

    stream.on('response', (headers: http2.IncomingHttpHeaders, flags: number, raw: string[]) => {
      clearTimeout(timer);
      if (call.cancelled) return;
      sent = true;
      const status = Number(headers[':status']);
      sink.onHead(status, http.STATUS_CODES[status] ?? '', fields(raw), (flags & NGHTTP2_FLAG_END_STREAM) !== 0);
    });
    const resume = () => stream.resume();
    stream.on('data', (chunk: Buffer) => {
      if (!call.cancelled && !sink.onData(chunk, resume)) stream.pause();
    });
    stream.on('trailers', (_h: http2.IncomingHttpHeaders, _f: number, raw: string[]) => {
      if (!call.cancelled) sink.onTrailers?.(raw);
    });
    stream.on('end', () => {
      // Node ends the readable side of a reset stream too; only its close tells the reset apart.
      if (stream.rstCode !== undefined && stream.rstCode !== NGHTTP2_NO_ERROR) return;
      ended = true;
      if (call.cancelled) return;
      sink.onEnd();
      // The answer is whole; a request body still coming has nowhere to go.
      if (body && !body.readableEnded && !stream.closed) stream.close(NGHTTP2_NO_ERROR);
    });
    stream.on('error', (err: NodeJS.ErrnoException) => (failure ??= err));
    stream.on('close', () => {
      clearTimeout(timer);
      s.open--;
      this.drain();
      if (call.cancelled || ended) return;
      sink.onError(failure ?? codeError(`backend reset the stream (code ${stream.rstCode})`, 'ERR_HTTP2_STREAM_ERROR'), sent);
    });
    if (body) sendBody(stream, body, ex.trailers);
  }

  /** Drain: open streams finish, then the session closes. */
  close(): void {
    this.#closing = true;
    this.drain();
  }

  destroy(): void {
    this.#closing = true;
    this.#failQueue(codeError('backend removed', 'ECONNRESET'));
    this.#current?.session.destroy(codeError('backend removed', 'ECONNRESET'));
  }
}

/** The client's body to the backend's stream, with backpressure, then its trailers (or none). */
function sendBody(stream: http2.ClientHttp2Stream, body: Readable, trailers: () => http2.OutgoingHttpHeaders | undefined): void {
  const resume = () => body.resume();
  const onData = (chunk: Buffer) => {
    if (stream.closed || stream.write(chunk)) return;
    body.pause();
    stream.once('drain', resume);
  };
  const onEnd = () => {
    if (!stream.closed) stream.end();
  };
  body.on('data', onData);
  body.once('end', onEnd);
  stream.once('wantTrailers', () => stream.sendTrailers(trailers() ?? {}));
  stream.once('close', () => {
    body.off('data', onData);
    body.off('end', onEnd);
    // A body paused for this stream would otherwise hold the client's connection.
    if (body.isPaused()) body.resume();
  });
}

/** The backend's HTTP/2 pool, made on first use (or anew when its route changed protocol). */
export function h2cPoolFor(ctx: ProxyContext, b: Backend): H2cPool {
  if (b.pool instanceof H2cPool) return b.pool;
  b.pool?.close();
  const pool = new H2cPool({ host: b.host, port: b.port, connectTimeout: ctx.connectTimeout, responseTimeout: ctx.responseTimeout, idleTimeout: 30_000 });
  b.pool = pool;
  return pool;
}
