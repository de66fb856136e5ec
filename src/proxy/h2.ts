// HTTP/2 to clients: one node http2 session per connection whose ALPN chose h2
// (https ports) or that began with the HTTP/2 preface (plain ports with an h2c
// route), each request forwarded as HTTP/1.1, or as HTTP/2 to h2c backends,
// with the same route lookup, retries and health reporting as http.ts.
//
// Abuse limits: at most MAX_STREAMS concurrent streams and --max-header-size of
// headers per request (node resets a larger one); a client that resets more than
// MAX_RESETS_PER_SECOND streams in a second (CVE-2023-44487, "rapid reset") gets a
// GOAWAY and is closed. CONTINUATION floods (CVE-2024-27983) are stopped by
// nghttp2 itself (node 20.12.1 and later): past 8 CONTINUATION frames the session
// is closed with a GOAWAY; test/integration/tls.test.ts checks it.
import type http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import { errorBody, errorCodeOf, errorStatus, type ErrorCode } from '../core/errors.js';
import { strippedTarget, type Backend, type Route } from '../table/table.js';
import type { ProxyContext } from './context.js';
import { h2cPoolFor, h2cRequestHeaders, headerObject } from './h2c-upstream.js';
import { backendAuthority, clientIp, connectionTokens, DROP_REQUEST, DROP_RESPONSE, httpsLocation, poolFor, requestLine, routeFor, type Scheme } from './http.js';
import { cookieValue, stickyCookie } from './sticky.js';
import { admitToRoute } from './limits.js';
import { ProxiedRequest } from './proxied.js';

const { NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_NO_ERROR } = http2.constants;

export const MAX_STREAMS = 128;
/** Far above what a browser cancels when a user navigates away; below nghttp2's own limit (a burst of 1000). */
export const MAX_RESETS_PER_SECOND = 100;
/** Response headers HTTP/2 forbids, on top of HTTP/1.1's hop-by-hop ones. */
const DROP_H2_RESPONSE = new Set([...DROP_RESPONSE, 'http2-settings', 'host']);

/** Streams meshd reset itself: not the client's doing, so not counted against it. */
const closedByMeshd = new WeakSet<http2.ServerHttp2Stream>();

/**
 * Resets a stream whose answer was cut. Not stream.close(code): on a stream
 * whose request has ended, node first ends the response cleanly, and the RST
 * then never goes out, so a cut answer would look whole; destroy() resets
 * (INTERNAL_ERROR) at once.
 */
function cutStream(stream: http2.ServerHttp2Stream): void {
  closedByMeshd.add(stream);
  stream.destroy(new Error('answer cut'));
}

function reply(ctx: ProxyContext, stream: http2.ServerHttp2Stream, code: ErrorCode): void {
  ctx.stats.count(code);
  if (stream.destroyed || stream.closed) return;
  if (stream.headersSent) return cutStream(stream);
  const body = errorBody(code);
  stream.respond({ ':status': errorStatus(code), 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), 'x-meshd-error': code });
  stream.end(body);
}

/** A backend's raw response headers as an HTTP/2 header object: lower case, hop-by-hop gone, repeats joined. */
function responseHeaders(status: number, raw: string[]): http2.OutgoingHttpHeaders {
  let extra: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 10 && raw[i]!.toLowerCase() === 'connection') extra = connectionTokens(raw[i + 1]);
  }
  const out: http2.OutgoingHttpHeaders = { ':status': status };
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (DROP_H2_RESPONSE.has(name) || extra?.has(name)) continue;
    const value = raw[i + 1]!;
    const prev = out[name];
    if (prev === undefined) out[name] = value;
    else if (name === 'set-cookie') out[name] = Array.isArray(prev) ? [...prev, value] : [String(prev), value];
    else out[name] = `${String(prev)}, ${value}`;
  }
  return out;
}

/** A client's request as meshd forwards it, and what framing its body needs. */
interface Request {
  method: string;
  path: string;
  /** :authority, or a Host header: what routes the request. */
  host: string | undefined;
  /** Fields for the backend: hop-by-hop ones gone, cookies joined, X-Forwarded-* added. */
  fields: string[];
  cookie: string | undefined;
  ip: string;
  hasBody: boolean;
  chunked: boolean;
  /** The client sent `te: trailers`. */
  te: boolean;
  /** Trailers the client sent after its body. */
  trailers?: http2.IncomingHttpHeaders;
}

/**
 * Reads the pseudo-headers and the rest, dropping hop-by-hop headers and
 * setting X-Forwarded-*. nghttp2 has already refused names, values and paths
 * with bytes that could split an HTTP/1.1 head.
 */
function requestFor(stream: http2.ServerHttp2Stream, raw: string[], ip: string, scheme: Scheme): Request | undefined {
  let method: string | undefined;
  let path: string | undefined;
  let authority: string | undefined;
  let host: string | undefined;
  let length: string | undefined;
  let xff: string | undefined;
  let cookie: string | undefined;
  let te = false;
  const fields: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    if (name.charCodeAt(0) === 58 /* : */) {
      if (name === ':method') method = value;
      else if (name === ':path') path = value;
      else if (name === ':authority') authority = value;
      continue;
    }
    if (name === 'host') host = value;
    else if (name === 'cookie') cookie = cookie === undefined ? value : `${cookie}; ${value}`;
    else if (name === 'x-forwarded-for') xff = xff ? `${xff}, ${value}` : value;
    else if (name === 'te') te = value === 'trailers';
    else if (!DROP_REQUEST.has(name)) {
      if (name === 'content-length') length = value;
      fields.push(name, value);
    }
  }
  // CONNECT (and extended CONNECT) has no HTTP/1.1 equivalent meshd forwards.
  if (!method || !path || method === 'CONNECT' || !/^[!-~]+$/.test(path)) return undefined;
  const hostname = authority ?? host;
  const hasBody = length !== undefined ? length !== '0' : !stream.endAfterHeaders;
  if (cookie !== undefined) fields.push('cookie', cookie);
  fields.push('x-forwarded-for', xff ? `${xff}, ${ip}` : ip, 'x-forwarded-proto', scheme);
  if (hostname) fields.push('x-forwarded-host', hostname);
  return { method, path, host: hostname, fields, hasBody, chunked: hasBody && length === undefined, te, cookie, ip };
}

/** The HTTP/1.1 head for the backend (with the route's prefix stripped). */
function h1Head(route: Route, req: Request): string {
  let text = requestLine(route, req.method, req.path);
  if (req.host) text += `host: ${req.host}\r\n`;
  const f = req.fields;
  for (let i = 0; i < f.length; i += 2) text += `${f[i]}: ${f[i + 1]}\r\n`;
  if (req.chunked) text += 'transfer-encoding: chunked\r\n';
  return text + '\r\n';
}

/** One request on its way through one backend, answered on an HTTP/2 stream. */
class Forward extends ProxiedRequest {
  /** The backend's trailers (h2c), sent when the body has ended. */
  #trailers: string[] | undefined;

  constructor(ctx: ProxyContext, route: Route, b: Backend, readonly stream: http2.ServerHttp2Stream, readonly req: Request, retried: boolean, started: number) {
    super(ctx, route, b, req.method, req.hasBody, retried, started);
  }

  onHead(status: number, _reason: string, headers: string[], last?: boolean): void {
    this.headArrived();
    if (this.done || this.stream.destroyed) return;
    try {
      const out = responseHeaders(status, headers);
      if (this.route.spec.hsts) out['strict-transport-security'] = this.route.spec.hsts;
      if (this.setCookie) out['set-cookie'] = [...([] as string[]).concat(out['set-cookie'] ?? []), this.setCookie];
      // A head that ends the answer stays one frame (gRPC reads a trailers-only answer by it); an h2c answer may end in trailers.
      if (last) this.stream.respond(out, { endStream: true });
      else if (this.route.spec.backend !== 'h2c') this.stream.respond(out);
      else {
        this.stream.respond(out, { waitForTrailers: true });
        this.stream.once('wantTrailers', () => this.#sendTrailers());
      }
    } catch (err) {
      // A head HTTP/2 cannot carry (status 101, a malformed value): the backend's answer is unusable.
      this.finish();
      this.abort?.();
      this.b.countError(errorCodeOf(err));
      reply(this.ctx, this.stream, 'BACKEND_FAILED');
    }
  }

  protected write(chunk: Buffer, resume: () => void): boolean {
    if (this.stream.destroyed || this.stream.write(chunk)) return true;
    this.stream.once('drain', resume);
    return false;
  }

  protected end(): void {
    if (!this.stream.destroyed && !this.stream.writableEnded) this.stream.end();
  }

  protected trailers(pairs: string[]): void {
    this.#trailers = pairs;
  }

  #sendTrailers(): void {
    try {
      this.stream.sendTrailers(this.#trailers ? headerObject(this.#trailers) : {});
    } catch (err) {
      // A trailer HTTP/2 cannot carry: the answer cannot end as the backend meant.
      this.b.countError(errorCodeOf(err));
      reply(this.ctx, this.stream, 'BACKEND_FAILED');
    }
  }

  protected clientGone(): boolean {
    return this.stream.destroyed;
  }

  protected retry(): void {
    forward(this.ctx, this.route, this.stream, this.req, this.started, this.b);
  }

  protected fail(code: ErrorCode): void {
    reply(this.ctx, this.stream, code);
  }
}

function forward(ctx: ProxyContext, route: Route, stream: http2.ServerHttp2Stream, req: Request, started: number, failed?: Backend): void {
  const sticky = route.spec.sticky && cookieValue(req.cookie, route.spec.sticky.cookie);
  const b = route.pick(failed, req.ip, sticky);
  if (!b) return reply(ctx, stream, failed ? 'BACKEND_FAILED' : 'NO_HEALTHY_BACKEND');
  b.acquire();
  const handler = new Forward(ctx, route, b, stream, req, failed !== undefined, started);
  if (route.spec.sticky && sticky !== b.stickyId) handler.setCookie = stickyCookie(route.spec.sticky.cookie, b.stickyId, true);
  stream.once('close', () => handler.cancel());
  const body = req.hasBody ? stream : null;
  if (route.spec.backend === 'h2c') {
    const stripped = strippedTarget(route, req.path);
    const fields = stripped ? [...req.fields, 'x-forwarded-prefix', stripped[1]] : req.fields;
    const headers = h2cRequestHeaders(req.method, stripped?.[0] ?? req.path, req.host ?? backendAuthority(b), fields, req.te);
    handler.abort = h2cPoolFor(ctx, b).dispatch({ headers, body, trailers: () => req.trailers, sink: handler });
  } else handler.abort = poolFor(ctx, b).dispatch({ method: req.method, head: h1Head(route, req), body, chunked: req.chunked, sink: handler });
}

/** Counts the streams a client resets; past the limit in one second, the session is closed. */
class ResetGuard {
  #windowStart = 0;
  #count = 0;

  constructor(readonly ctx: ProxyContext, readonly session: http2.ServerHttp2Session) {}

  closed(stream: http2.ServerHttp2Stream): void {
    if (stream.rstCode === undefined || stream.rstCode === NGHTTP2_NO_ERROR || closedByMeshd.has(stream)) return;
    const now = Date.now();
    if (now - this.#windowStart >= 1000) {
      this.#windowStart = now;
      this.#count = 0;
    }
    if (++this.#count <= MAX_RESETS_PER_SECOND || this.session.destroyed) return;
    this.ctx.stats.tripped('h2-rapid-reset');
    this.ctx.log.debug({ remote: this.session.socket?.remoteAddress, resets: this.#count }, 'HTTP/2 client resets too many streams; closing its session');
    this.session.destroy(new Error('too many streams reset by the client'), NGHTTP2_ENHANCE_YOUR_CALM);
  }
}

export interface H2Front {
  /** Takes a connection whose ALPN chose h2, or that opened with the HTTP/2 preface. */
  accept(socket: net.Socket): void;
  /** Graceful: GOAWAY to every session; open streams finish. */
  closeIdle(): void;
  closeAll(): void;
}

/** A port's listening server, with the connection closers Listeners calls on an http.Server, reaching both fronts. */
export function withFronts<S extends net.Server>(server: S, h1: http.Server, h2: H2Front): S {
  return Object.assign(server, {
    closeIdleConnections: () => {
      h1.closeIdleConnections();
      h2.closeIdle();
    },
    closeAllConnections: () => {
      h1.closeAllConnections();
      h2.closeAll();
    },
  });
}

/** HTTP/2 clients of one port: over TLS (ALPN h2), or in the clear with prior knowledge (h2c, `scheme` http). */
export function createH2Front(ctx: ProxyContext, port: number, scheme: Scheme): H2Front {
  const server = http2.createServer({
    settings: { maxConcurrentStreams: MAX_STREAMS, maxHeaderListSize: ctx.limits.maxHeaderSize, enablePush: false },
  });
  const sessions = new Set<http2.ServerHttp2Session>();

  server.on('session', (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    session.on('error', () => {});
    const guard = new ResetGuard(ctx, session);
    let open = 0;
    // Idle with no stream open for --client-idle-timeout: close, as an idle keep-alive HTTP/1.1 connection.
    session.setTimeout(ctx.limits.idleTimeout, () => {
      if (open > 0) return;
      ctx.stats.tripped('client-idle-timeout');
      session.close();
    });
    const ip = clientIp(session.socket as net.Socket);
    session.on('stream', (stream: http2.ServerHttp2Stream, _headers: http2.IncomingHttpHeaders, _flags: number, raw: string[]) => {
      open++;
      stream.on('error', () => {});
      stream.once('close', () => {
        open--;
        guard.closed(stream);
      });
      const req = requestFor(stream, raw, ip, scheme);
      if (!req) return reply(ctx, stream, 'BAD_REQUEST');
      const route = routeFor(ctx, port, req.host, req.path);
      if (!route) return reply(ctx, stream, 'NO_ROUTE');
      if (route.spec.redirectHttps !== undefined) {
        const location = httpsLocation(req.host, req.path, route.spec.redirectHttps);
        if (!location) return reply(ctx, stream, 'BAD_REQUEST');
        stream.respond({ ':status': 308, location, 'content-length': 0 }, { endStream: true });
        return;
      }
      if (route.spec.backend === 'h2c') stream.once('trailers', (trailers: http2.IncomingHttpHeaders) => (req.trailers = trailers));
      if (!admitToRoute(ctx, route, stream)) return reply(ctx, stream, 'ROUTE_AT_CAPACITY');
      forward(ctx, route, stream, req, performance.now());
    });
  });

  return {
    accept: (socket) => void server.emit('connection', socket),
    closeIdle: () => { for (const s of sessions) s.close(); },
    closeAll: () => { for (const s of sessions) s.destroy(); },
  };
}
