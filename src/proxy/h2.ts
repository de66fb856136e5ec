// HTTP/2 to clients on https ports: one node http2 session per connection whose
// ALPN chose h2, each request forwarded as HTTP/1.1 through the same upstream
// pools, route lookup, retries and health reporting as http.ts.
//
// Abuse limits: at most MAX_STREAMS concurrent streams and --max-header-size of
// headers per request (node resets a larger one); a client that resets more than
// MAX_RESETS_PER_SECOND streams in a second (CVE-2023-44487, "rapid reset") gets a
// GOAWAY and is closed. CONTINUATION floods (CVE-2024-27983) are stopped by
// nghttp2 itself (node 20.12.1 and later): past 8 CONTINUATION frames the session
// is closed with a GOAWAY; test/integration/tls.test.ts checks it.
import http2 from 'node:http2';
import type net from 'node:net';
import { errorBody, errorCodeOf, errorStatus, type ErrorCode } from '../core/errors.js';
import type { Backend, Route } from '../table/table.js';
import type { ProxyContext } from './context.js';
import { clientIp, connectionTokens, DROP_REQUEST, DROP_RESPONSE, poolFor, requestLine, routeFor } from './http.js';
import { cookieValue, stickyCookie } from './sticky.js';
import { admitToRoute } from './limits.js';
import { ProxiedRequest } from './proxied.js';

const { NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_INTERNAL_ERROR, NGHTTP2_NO_ERROR } = http2.constants;

export const MAX_STREAMS = 128;
/** Far above what a browser cancels when a user navigates away; below nghttp2's own limit (a burst of 1000). */
export const MAX_RESETS_PER_SECOND = 100;
/** Response headers HTTP/2 forbids, on top of HTTP/1.1's hop-by-hop ones. */
const DROP_H2_RESPONSE = new Set([...DROP_RESPONSE, 'http2-settings', 'host']);

/** Streams meshd reset itself: not the client's doing, so not counted against it. */
const closedByMeshd = new WeakSet<http2.ServerHttp2Stream>();

function resetStream(stream: http2.ServerHttp2Stream, code: number): void {
  closedByMeshd.add(stream);
  stream.close(code);
}

function reply(ctx: ProxyContext, stream: http2.ServerHttp2Stream, code: ErrorCode): void {
  ctx.stats.count(code);
  if (stream.destroyed || stream.closed) return;
  if (stream.headersSent) return resetStream(stream, NGHTTP2_INTERNAL_ERROR);
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

/** The HTTP/1.1 request for the backend, and what framing its body needs. */
interface Request {
  method: string;
  /** :path, the request target. */
  path: string;
  /** :authority, or a Host header: what routes the request. */
  host: string | undefined;
  /** The HTTP/1.1 head's header lines, without the request line (which depends on the route). */
  head: string;
  cookie: string | undefined;
  ip: string;
  hasBody: boolean;
  chunked: boolean;
}

/**
 * Builds the HTTP/1.1 head from the pseudo-headers and the rest, dropping
 * hop-by-hop headers and setting X-Forwarded-*. nghttp2 has already refused
 * names, values and paths with bytes that could split an HTTP/1.1 head.
 */
function requestFor(stream: http2.ServerHttp2Stream, raw: string[], ip: string): Request | undefined {
  let method: string | undefined;
  let path: string | undefined;
  let authority: string | undefined;
  let host: string | undefined;
  let length: string | undefined;
  let xff: string | undefined;
  let cookie: string | undefined;
  let head = '';
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
    else if (!DROP_REQUEST.has(name)) {
      if (name === 'content-length') length = value;
      head += `${name}: ${value}\r\n`;
    }
  }
  // CONNECT (and extended CONNECT) has no HTTP/1.1 equivalent meshd forwards.
  if (!method || !path || method === 'CONNECT' || !/^[!-~]+$/.test(path)) return undefined;
  const hostname = authority ?? host;
  const hasBody = length !== undefined ? length !== '0' : !stream.endAfterHeaders;
  const chunked = hasBody && length === undefined;
  let text = '';
  if (hostname) text += `host: ${hostname}\r\n`;
  text += head;
  if (cookie !== undefined) text += `cookie: ${cookie}\r\n`;
  text += `x-forwarded-for: ${xff ? `${xff}, ${ip}` : ip}\r\nx-forwarded-proto: https\r\n`;
  if (hostname) text += `x-forwarded-host: ${hostname}\r\n`;
  if (chunked) text += 'transfer-encoding: chunked\r\n';
  return { method, path, host: hostname, head: text + '\r\n', cookie, ip, hasBody, chunked };
}

/** One request on its way through one backend, answered on an HTTP/2 stream. */
class Forward extends ProxiedRequest {
  constructor(ctx: ProxyContext, route: Route, b: Backend, readonly stream: http2.ServerHttp2Stream, readonly req: Request, retried: boolean, started: number) {
    super(ctx, route, b, req.method, req.hasBody, retried, started);
  }

  onHead(status: number, _reason: string, headers: string[]): void {
    this.headArrived();
    if (this.done || this.stream.destroyed) return;
    try {
      const out = responseHeaders(status, headers);
      if (this.route.spec.hsts) out['strict-transport-security'] = this.route.spec.hsts;
      if (this.setCookie) out['set-cookie'] = [...([] as string[]).concat(out['set-cookie'] ?? []), this.setCookie];
      this.stream.respond(out);
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
    if (!this.stream.destroyed) this.stream.end();
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
  handler.abort = poolFor(ctx, b).dispatch({ method: req.method, head: requestLine(route, req.method, req.path) + req.head, body: req.hasBody ? stream : null, chunked: req.chunked, sink: handler });
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
  /** Takes a TLS connection whose ALPN chose h2. */
  accept(socket: net.Socket): void;
  /** Graceful: GOAWAY to every session; open streams finish. */
  closeIdle(): void;
  closeAll(): void;
}

export function createH2Front(ctx: ProxyContext, port: number): H2Front {
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
      const req = requestFor(stream, raw, ip);
      if (!req) return reply(ctx, stream, 'BAD_REQUEST');
      const route = routeFor(ctx, port, req.host, req.path);
      if (!route) return reply(ctx, stream, 'NO_ROUTE');
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
