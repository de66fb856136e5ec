// L7: node's HTTP server in front, meshd's lean per-backend keep-alive client
// behind (upstream.ts; bench/ has the measurements that chose it over undici and
// http-proxy). Headers travel as flat raw arrays and one head string.
import http from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { errorBody, errorStatus, rawErrorResponse, type ErrorCode } from '../core/errors.js';
import { answerChallenge } from '../tls/challenges.js';
import { routeOf, strippedTarget, type Backend, type Route } from '../table/table.js';
import type { ProxyContext } from './context.js';
import { h2cPoolFor, h2cRequestHeaders, headerObject } from './h2c-upstream.js';
import { admitToRoute } from './limits.js';
import { pipeToBackend } from './pipe.js';
import { ProxiedRequest } from './proxied.js';
import { checkRequest } from './request-checks.js';
import { cookieValue, stickyCookie } from './sticky.js';
import { UpstreamPool } from './upstream.js';

/** Hop-by-hop headers (RFC 9110 §7.6.1) plus the ones meshd sets itself. */
export const DROP_REQUEST = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
  'expect', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host',
]);
export const DROP_RESPONSE = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

export function clientIp(socket: net.Socket): string {
  const a = socket.remoteAddress ?? '';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

/** Names listed in a Connection header are hop-by-hop too. */
export function connectionTokens(value: string | undefined): Set<string> | undefined {
  if (!value) return undefined;
  const names = value.toLowerCase().split(',').map((s) => s.trim()).filter((s) => s && s !== 'close' && s !== 'keep-alive' && s !== 'upgrade');
  return names.length ? new Set(names) : undefined;
}

/** What meshd needs of a request's headers, read in one pass over the raw pairs. */
interface RequestHead {
  /** Headers for the backend: raw pairs minus hop-by-hop, plus X-Forwarded-*. */
  headers: string[];
  host: string | undefined;
  length: string | undefined;
  chunked: boolean;
  /** The Cookie header(s), joined: sticky routes read theirs from it. */
  cookie: string | undefined;
  /** The client's address (source-hash). */
  ip: string;
  /** The client takes trailers (TE: trailers): said again to h2c backends, which may require it. */
  te: boolean;
}

export type Scheme = 'http' | 'https';

function readRequestHead(req: http.IncomingMessage, keepUpgrade: boolean, scheme: Scheme): RequestHead {
  const raw = req.rawHeaders;
  const out: string[] = [];
  let host: string | undefined;
  let length: string | undefined;
  let chunked = false;
  let te = false;
  let xff: string | undefined;
  let extra: Set<string> | undefined;
  let cookie: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const lower = name.toLowerCase();
    if (lower === 'host') host = value;
    else if (lower === 'content-length') length = value;
    else if (lower === 'cookie') cookie = cookie === undefined ? value : `${cookie}; ${value}`;
    else if (DROP_REQUEST.has(lower)) {
      if (lower === 'x-forwarded-for') xff = xff ? `${xff}, ${value}` : value;
      else if (lower === 'transfer-encoding') chunked = true;
      else if (lower === 'connection') extra = connectionTokens(value);
      else if (lower === 'te') te = /(?:^|,)\s*trailers\s*(?:[;,]|$)/i.test(value);
      if (keepUpgrade && (lower === 'upgrade' || lower === 'connection')) out.push(name, value);
      continue;
    }
    out.push(name, value);
  }
  // Names listed in Connection are hop-by-hop too; it may come after them, hence a second pass (rare).
  const headers = extra ? out.filter((_, i) => !extra!.has(out[i - (i % 2)]!.toLowerCase())) : out;
  const ip = clientIp(req.socket);
  headers.push('x-forwarded-for', xff ? `${xff}, ${ip}` : ip, 'x-forwarded-proto', scheme);
  if (host) headers.push('x-forwarded-host', host);
  return { headers, host, length, chunked, te, cookie, ip };
}

function responseHeaders(raw: string[]): string[] {
  let extra: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 10 && raw[i]!.toLowerCase() === 'connection') extra = connectionTokens(raw[i + 1]);
  }
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase();
    if (DROP_RESPONSE.has(lower) || extra?.has(lower)) continue;
    out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

/** meshd's Strict-Transport-Security replaces the backend's own. */
function withHsts(headers: string[], value: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) if (headers[i]!.toLowerCase() !== 'strict-transport-security') out.push(headers[i]!, headers[i + 1]!);
  out.push('strict-transport-security', value);
  return out;
}

/**
 * The https URL for a plain-HTTP request: same host (without its port), path and
 * query; undefined when the Host header is not a plain host name or address.
 */
export function httpsLocation(host: string | undefined, url: string, port: number): string | undefined {
  const m = host ? /^([a-z0-9.-]+|\[[0-9a-f:.]+\])(?::\d+)?$/i.exec(host) : null;
  if (!m) return undefined;
  let path = url;
  if (!path.startsWith('/')) {
    try {
      const u = new URL(url);
      path = u.pathname + u.search;
    } catch {
      path = '/';
    }
  }
  return `https://${m[1]}${port === 443 ? '' : `:${port}`}${path}`;
}

function reply(ctx: ProxyContext, res: http.ServerResponse, code: ErrorCode): void {
  ctx.stats.count(code);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = errorBody(code);
  res.writeHead(errorStatus(code), { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), 'x-meshd-error': code });
  res.end(body);
}

export function poolFor(ctx: ProxyContext, b: Backend): UpstreamPool {
  if (b.pool instanceof UpstreamPool) return b.pool;
  // A route that switched from h2c: its old pool drains.
  b.pool?.close();
  const pool = new UpstreamPool({
    host: b.host, port: b.port,
    connectTimeout: ctx.connectTimeout, responseTimeout: ctx.responseTimeout,
    maxConnections: 512, idleTimeout: 30_000,
  });
  b.pool = pool;
  return pool;
}

/** Host for a request that came without one: the backend's own address. */
export function backendAuthority(b: Backend): string {
  return `${b.host.includes(':') ? `[${b.host}]` : b.host}:${b.port}`;
}

/** Finds the route for a request by its Host header, then its path. */
export function routeFor(ctx: ProxyContext, port: number, host: string | undefined, target: string): Route | undefined {
  const entry = ctx.table.ports.get(port);
  if (!entry) return undefined;
  if (entry.byHost.size === 0 || !host) return routeOf(entry, undefined, target);
  let name = host.toLowerCase();
  const colon = name.lastIndexOf(':');
  if (colon > 0 && name.indexOf(']') < colon) name = name.slice(0, colon);
  return routeOf(entry, name, target);
}

/** One request on its way through one backend, answered on an HTTP/1.1 response. */
class Forward extends ProxiedRequest {
  constructor(ctx: ProxyContext, route: Route, b: Backend, readonly req: http.IncomingMessage, readonly res: http.ServerResponse, readonly rh: RequestHead, hasBody: boolean, retried: boolean, started: number) {
    super(ctx, route, b, req.method!, hasBody, retried, started);
  }

  onHead(status: number, reason: string, headers: string[]): void {
    this.headArrived();
    if (this.done) return;
    const out = responseHeaders(headers);
    if (this.setCookie) out.push('set-cookie', this.setCookie);
    const hsts = this.route.spec.hsts;
    this.res.writeHead(status, reason, hsts ? withHsts(out, hsts) : out);
  }

  protected write(chunk: Buffer, resume: () => void): boolean {
    if (this.res.write(chunk)) return true;
    this.res.once('drain', resume);
    return false;
  }

  protected end(): void {
    this.res.end();
  }

  /** From h2c backends; HTTP/1.1 frames trailers only after a chunked body (not after a Content-Length one, nor to HTTP/1.0). */
  protected trailers(pairs: string[]): void {
    if (!this.res.chunkedEncoding) return;
    const list: [string, string][] = [];
    for (let i = 0; i < pairs.length; i += 2) list.push([pairs[i]!, pairs[i + 1]!]);
    this.res.addTrailers(list);
  }

  protected clientGone(): boolean {
    return this.res.destroyed || (this.req.destroyed && !this.req.complete);
  }

  protected retry(): void {
    forward(this.ctx, this.route, this.req, this.res, this.rh, this.started, this.b);
  }

  protected fail(code: ErrorCode): void {
    reply(this.ctx, this.res, code);
  }
}

/** The request line for the backend, and the header that tells it what prefix was stripped. */
export function requestLine(route: Route, method: string, target: string): string {
  const stripped = strippedTarget(route, target);
  return stripped ? `${method} ${stripped[0]} HTTP/1.1\r\nx-forwarded-prefix: ${stripped[1]}\r\n` : `${method} ${target} HTTP/1.1\r\n`;
}

/** The request head for the backend: request line, headers, and the framing meshd adds. */
function requestHead(route: Route, req: http.IncomingMessage, rh: RequestHead, b: Backend, chunked: boolean): string {
  const headers = rh.headers;
  let head = requestLine(route, req.method!, req.url!);
  for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  if (!rh.host) head += `host: ${backendAuthority(b)}\r\n`;
  if (chunked) head += 'transfer-encoding: chunked\r\n';
  return head + '\r\n';
}

function forward(ctx: ProxyContext, route: Route, req: http.IncomingMessage, res: http.ServerResponse, rh: RequestHead, started: number, failed?: Backend): void {
  const sticky = route.spec.sticky && cookieValue(rh.cookie, route.spec.sticky.cookie);
  const b = route.pick(failed, rh.ip, sticky);
  // On a retry with no other backend left, the failure the client should hear of is the first one.
  if (!b) return reply(ctx, res, failed ? 'BACKEND_FAILED' : 'NO_HEALTHY_BACKEND');
  b.acquire();
  const chunked = rh.length === undefined && rh.chunked;
  const hasBody = chunked || (rh.length !== undefined && rh.length !== '0');
  const handler = new Forward(ctx, route, b, req, res, rh, hasBody, failed !== undefined, started);
  if (route.spec.sticky && sticky !== b.stickyId) handler.setCookie = stickyCookie(route.spec.sticky.cookie, b.stickyId, route.spec.mode === 'https');
  (res as TrackedResponse)[EXCHANGE] = handler;
  if (route.spec.backend === 'h2c') {
    const stripped = strippedTarget(route, req.url!);
    const fields = stripped ? [...rh.headers, 'x-forwarded-prefix', stripped[1]] : rh.headers;
    const headers = h2cRequestHeaders(req.method!, stripped?.[0] ?? req.url!, rh.host ?? backendAuthority(b), fields, rh.te);
    const trailers = () => (req.rawTrailers.length ? headerObject(req.rawTrailers) : undefined);
    handler.abort = h2cPoolFor(ctx, b).dispatch({ headers, body: hasBody ? req : null, trailers, sink: handler });
    return;
  }
  handler.abort = poolFor(ctx, b).dispatch({ method: req.method!, head: requestHead(route, req, rh, b, chunked), body: hasBody ? req : null, chunked, sink: handler });
}

/** WebSocket and other upgrades: the request head is replayed to a backend, then bytes are piped. */
function upgrade(ctx: ProxyContext, route: Route, req: http.IncomingMessage, client: Duplex, head: Buffer, scheme: Scheme): void {
  pipeToBackend(ctx, route, client, {
    preamble: () => {
      const headers = readRequestHead(req, true, scheme).headers;
      let text = requestLine(route, req.method!, req.url!);
      for (let i = 0; i < headers.length; i += 2) text += `${headers[i]}: ${headers[i + 1]}\r\n`;
      return head.length ? Buffer.concat([Buffer.from(text + '\r\n', 'latin1'), head]) : text + '\r\n';
    },
    giveUp: (code) => client.end(rawErrorResponse(code)),
  });
}

type Serve = (req: http.IncomingMessage, res: http.ServerResponse) => void;

interface Pipeline {
  busy: boolean;
  /** Requests parsed while one is in flight, as flat pairs: request, response. */
  waiting: (http.IncomingMessage | http.ServerResponse)[];
  serve: Serve;
}
const PIPELINE = Symbol('meshd.pipeline');
/** The upstream exchange of a response, cancelled when the response closes first. */
const EXCHANGE = Symbol('meshd.exchange');
/** Pipelined requests a connection may have waiting; benchmarks pipeline 16 deep at most. */
const MAX_PIPELINE = 64;
type PipelinedSocket = net.Socket & { [PIPELINE]?: Pipeline; _handle?: { readStart(): number; readStop(): number } | null };
type TrackedResponse = http.ServerResponse & { [EXCHANGE]?: Forward };

/**
 * Serves the requests of one connection one at a time, as HAProxy does with
 * pipelining, so answers go out in order and meshd never buffers many. While
 * requests wait, the socket is not read (node's parser reads the handle
 * directly, so pausing the stream would not stop it); what one read already
 * brought is parsed, and a client with more than MAX_PIPELINE requests waiting
 * from it is cut off: node keeps every parsed request until its answer is sent.
 */
function serially(ctx: ProxyContext, req: http.IncomingMessage, res: http.ServerResponse, serve: Serve): void {
  const socket = req.socket as PipelinedSocket;
  // Node goes on parsing the chunk at hand after a cut; those requests have nowhere to go.
  if (socket.destroyed) return;
  const p = socket[PIPELINE] ??= { busy: false, waiting: [], serve };
  if (!p.busy) return start(p, req, res);
  if (p.waiting.length >= 2 * MAX_PIPELINE) {
    ctx.stats.tripped('pipeline-depth');
    return void socket.destroy();
  }
  if (p.waiting.push(req, res) === 2) socket._handle?.readStop();
}

function start(p: Pipeline, req: http.IncomingMessage, res: http.ServerResponse): void {
  p.busy = true;
  // One shared listener, no closure: this runs for every request.
  res.on('close', onResponseClose);
  p.serve(req, res);
}

function onResponseClose(this: TrackedResponse): void {
  this[EXCHANGE]?.cancel();
  const socket = this.req.socket as PipelinedSocket;
  const p = socket[PIPELINE]!;
  p.busy = false;
  if (socket.destroyed) return void (p.waiting.length = 0);
  if (p.waiting.length) return start(p, p.waiting.shift() as http.IncomingMessage, p.waiting.shift() as http.ServerResponse);
  socket._handle?.readStart();
}

/** What a malformed or over-limit client is told before its connection closes. */
function clientErrorCode(err: NodeJS.ErrnoException): ErrorCode {
  if (err.code === 'HPE_HEADER_OVERFLOW') return 'HEADERS_TOO_LARGE';
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return 'REQUEST_TIMEOUT';
  return 'BAD_REQUEST';
}

/**
 * The HTTP/1.1 front of a port. It does not listen: the plain front (plain.ts)
 * or the TLS front (https.ts) admits each connection and hands it over;
 * `scheme` sets X-Forwarded-Proto.
 */
export function createHttpServer(ctx: ProxyContext, port: number, scheme: Scheme = 'http'): http.Server {
  const { limits } = ctx;
  const server = http.createServer({
    keepAlive: true, noDelay: true, requestTimeout: 0,
    maxHeaderSize: limits.maxHeaderSize,
    headersTimeout: limits.headerTimeout,
    keepAliveTimeout: limits.idleTimeout,
    // How often node looks for clients past the header timeout: a slowloris client is cut within this much of it.
    connectionsCheckingInterval: Math.min(1000, limits.headerTimeout),
  });
  // With no server-wide socket timeout set, a socket times out only idling between keep-alive requests.
  server.on('timeout', (socket: net.Socket) => {
    ctx.stats.tripped('client-idle-timeout');
    socket.destroy();
  });
  const serve: Serve = (req, res) => {
    const started = performance.now();
    // A request meshd and its backend could read differently is refused, and its connection closed.
    const problem = checkRequest(req);
    if (problem) {
      ctx.log.debug({ port, problem }, 'request refused');
      res.shouldKeepAlive = false;
      return reply(ctx, res, 'BAD_REQUEST');
    }
    // The CA fetches HTTP-01 tokens over plain HTTP from whichever node a name points at; the set is empty between orders.
    if (ctx.challenges.size !== 0 && scheme === 'http') {
      const body = answerChallenge(ctx.challenges, req.method, req.url);
      if (body !== undefined) {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
        return void res.end(body);
      }
    }
    const rh = readRequestHead(req, false, scheme);
    const route = routeFor(ctx, port, rh.host, req.url!);
    if (!route) return reply(ctx, res, 'NO_ROUTE');
    if (route.spec.redirectHttps !== undefined) {
      const location = httpsLocation(rh.host, req.url!, route.spec.redirectHttps);
      if (!location) return reply(ctx, res, 'BAD_REQUEST');
      res.writeHead(308, { location, 'content-length': 0 });
      return void res.end();
    }
    if (!admitToRoute(ctx, route, res)) return reply(ctx, res, 'ROUTE_AT_CAPACITY');
    forward(ctx, route, req, res, rh, started);
  };
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => serially(ctx, req, res, serve));
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const problem = checkRequest(req);
    if (problem) {
      ctx.log.debug({ port, problem }, 'upgrade refused');
      ctx.stats.count('BAD_REQUEST');
      socket.end(rawErrorResponse('BAD_REQUEST'));
      return;
    }
    const route = routeFor(ctx, port, req.headers.host, req.url!);
    if (!route) {
      ctx.stats.count('NO_ROUTE');
      socket.end(rawErrorResponse('NO_ROUTE'));
      return;
    }
    if (route.spec.redirectHttps !== undefined) {
      const location = httpsLocation(req.headers.host, req.url!, route.spec.redirectHttps);
      if (!location) ctx.stats.count('BAD_REQUEST');
      socket.end(location ? `HTTP/1.1 308 Permanent Redirect\r\nlocation: ${location}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n` : rawErrorResponse('BAD_REQUEST'));
      return;
    }
    if (!admitToRoute(ctx, route, socket)) {
      ctx.stats.count('ROUTE_AT_CAPACITY');
      socket.end(rawErrorResponse('ROUTE_AT_CAPACITY'));
      return;
    }
    upgrade(ctx, route, req, socket, head, scheme);
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    // Malformed HTTP or a limit: answer this client alone and close its connection,
    // unless a response is already on its way there (a 4xx would land inside it).
    const busy = (socket as { _httpMessage?: http.ServerResponse })._httpMessage?.headersSent;
    if (err.code === 'ECONNRESET' || !socket.writable || busy) return void socket.destroy();
    const code = clientErrorCode(err);
    if (code === 'HEADERS_TOO_LARGE') ctx.stats.tripped('max-header-size');
    else if (code === 'REQUEST_TIMEOUT') ctx.stats.tripped('client-header-timeout');
    ctx.stats.count(code);
    ctx.log.debug({ port, code: err.code }, 'client error');
    socket.end(rawErrorResponse(code));
  });
  return server;
}
