// A lean HTTP/1.1 client for one backend: keep-alive connections, a request
// head written in one go, and a response parser (response-parser.ts) that
// reads only what framing needs and hands body bytes on without copying.
// Measured in bench/: it took meshd's whole L7 path from 49 to about 40 µs of
// CPU per request, the cost of a bare undici dispatch alone.
import net from 'node:net';
import type { Readable } from 'node:stream';
import type { Closable } from '../table/table.js';
import { ResponseParser, type ResponseEvents } from './response-parser.js';

/** What a request's response is handed to. */
export interface Sink {
  /** `last`: the head ends the response (HTTP/2 only: a gRPC trailers-only answer, say). */
  onHead(status: number, reason: string, headers: string[], last?: boolean): void;
  /** Returns false when the client cannot take more yet; call resume() once it drains. */
  onData(chunk: Buffer, resume: () => void): boolean;
  /** HTTP/2 backends: the response's trailers, just before onEnd. */
  onTrailers?(trailers: string[]): void;
  onEnd(): void;
  /** `sent`: whether any byte of the response reached the sink (a head, data). */
  onError(err: NodeJS.ErrnoException, sent: boolean): void;
}

export interface Exchange {
  method: string;
  /** Request line and headers, ending with the blank line. */
  head: string;
  body: Readable | null;
  /** Body framing to add: chunked when the client sent no Content-Length. */
  chunked: boolean;
  sink: Sink;
}

export interface UpstreamOptions {
  host: string;
  port: number;
  connectTimeout: number;
  responseTimeout: number;
  maxConnections: number;
  idleTimeout: number;
}

function codeError(message: string, code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code });
}

class Connection implements ResponseEvents {
  readonly socket: net.Socket;
  readonly parser = new ResponseParser(this);
  exchange: Exchange | undefined;
  sent = false;
  /** The request body has been written whole; until then the connection cannot be reused. */
  bodyDone = true;
  connected = false;
  #timer: NodeJS.Timeout | undefined;
  readonly #resume = () => this.socket.resume();

  constructor(readonly pool: UpstreamPool) {
    const o = pool.options;
    this.socket = net.connect({ host: o.host, port: o.port, noDelay: true });
    this.socket.setTimeout(o.connectTimeout);
    this.socket.once('connect', () => {
      this.connected = true;
      this.socket.setTimeout(0);
      this.#armResponseTimeout();
    });
    // One timeout serves both: connecting (an error) and idling in the pool (just close).
    this.socket.on('timeout', () => this.socket.destroy(this.connected ? undefined : codeError('connect timeout', 'ETIMEDOUT')));
    // Bytes while idle are an error of the parser's: the connection cannot be trusted any more.
    this.socket.on('data', (chunk: Buffer) => this.parser.execute(chunk));
    this.socket.on('end', () => {
      // A close-delimited body ends here; any other response was cut short (the close below fails it).
      this.parser.finish();
      this.socket.destroy();
    });
    this.socket.on('error', (err: NodeJS.ErrnoException) => this.#fail(err));
    this.socket.on('close', () => this.#fail(codeError('backend closed the connection', 'ECONNRESET')));
  }

  start(ex: Exchange): void {
    this.exchange = ex;
    this.sent = false;
    this.parser.expect(ex.method);
    if (this.connected) this.#armResponseTimeout();
    const s = this.socket;
    s.write(ex.head, 'latin1');
    if (!ex.body) return;
    this.bodyDone = false;
    // The body starts flowing only once connected: a refused connect leaves it
    // unread, so the request can still go to another backend whole.
    if (this.connected) this.#sendBody(ex, ex.body);
    else s.once('connect', () => { if (this.exchange === ex) this.#sendBody(ex, ex.body!); });
  }

  #sendBody(ex: Exchange, body: Readable): void {
    const s = this.socket;
    body.on('data', (c: Buffer) => {
      if (this.exchange !== ex) return;
      let ok: boolean;
      if (ex.chunked) {
        s.cork();
        s.write(`${c.length.toString(16)}\r\n`, 'latin1');
        s.write(c);
        ok = s.write('\r\n', 'latin1');
        s.uncork();
      } else ok = s.write(c);
      if (!ok) {
        body.pause();
        s.once('drain', () => body.resume());
      }
    });
    body.once('end', () => {
      if (this.exchange !== ex) return;
      this.bodyDone = true;
      if (ex.chunked) s.write('0\r\n\r\n', 'latin1');
    });
  }

  #armResponseTimeout(): void {
    clearTimeout(this.#timer);
    if (!this.parser.awaitingHead) return;
    this.#timer = setTimeout(() => this.socket.destroy(codeError('no response head in time', 'HEADERS_TIMEOUT')), this.pool.options.responseTimeout);
  }

  onHead(status: number, reason: string, headers: string[]): void {
    clearTimeout(this.#timer);
    this.sent = true;
    this.exchange!.sink.onHead(status, reason, headers);
  }

  onData(chunk: Buffer): void {
    if (!this.exchange!.sink.onData(chunk, this.#resume)) this.socket.pause();
  }

  onEnd(keepAlive: boolean): void {
    const ex = this.exchange!;
    this.exchange = undefined;
    ex.sink.onEnd();
    // A backend may answer before it has read the whole request body (a 413, say):
    // the rest of that body would then be read as the next request.
    if (keepAlive && this.bodyDone && !this.socket.destroyed) this.pool.release(this);
    else {
      this.parser.stop();
      this.socket.destroy();
    }
  }

  onError(message: string): void {
    this.socket.destroy(codeError(`backend sent ${message}`, 'HPE_INVALID'));
  }

  #fail(err: NodeJS.ErrnoException): void {
    clearTimeout(this.#timer);
    this.pool.forget(this);
    this.parser.stop();
    const ex = this.exchange;
    this.exchange = undefined;
    if (!this.socket.destroyed) this.socket.destroy();
    ex?.sink.onError(err, this.sent);
  }

  /** The client went away: this connection's response has nowhere to go. */
  abort(): void {
    this.exchange = undefined;
    this.parser.stop();
    this.socket.destroy();
  }
}

export class UpstreamPool implements Closable {
  readonly #idle: Connection[] = [];
  readonly #all = new Set<Connection>();
  readonly #queue: Exchange[] = [];
  #closing = false;

  constructor(readonly options: UpstreamOptions) {}

  /** Sends a request on an idle connection, a new one, or queues it; returns a way to abort it. */
  dispatch(ex: Exchange): () => void {
    let conn = this.#idle.pop();
    while (conn && conn.socket.destroyed) conn = this.#idle.pop();
    if (conn) {
      conn.socket.setTimeout(0);
      conn.start(ex);
      return () => { if (conn!.exchange === ex) conn!.abort(); };
    }
    if (this.#all.size >= this.options.maxConnections) {
      this.#queue.push(ex);
      return () => {
        const i = this.#queue.indexOf(ex);
        if (i >= 0) this.#queue.splice(i, 1);
      };
    }
    const fresh = new Connection(this);
    this.#all.add(fresh);
    fresh.start(ex);
    return () => { if (fresh.exchange === ex) fresh.abort(); };
  }

  release(conn: Connection): void {
    const next = this.#queue.shift();
    if (next) return conn.start(next);
    if (this.#closing) return void conn.socket.destroy();
    conn.socket.setTimeout(this.options.idleTimeout);
    this.#idle.push(conn);
  }

  forget(conn: Connection): void {
    if (!this.#all.delete(conn)) return;
    const i = this.#idle.indexOf(conn);
    if (i >= 0) this.#idle.splice(i, 1);
    // A queued request waits for a free connection; this one just freed a place.
    const next = this.#queue.shift();
    if (next && !this.#closing) this.dispatch(next);
  }

  /** Drain: idle connections go now, busy ones once their exchange ends. */
  close(): void {
    this.#closing = true;
    for (const c of this.#idle.splice(0)) c.socket.destroy();
  }

  destroy(): void {
    this.#closing = true;
    for (const ex of this.#queue.splice(0)) ex.sink.onError(codeError('backend removed', 'ECONNRESET'), false);
    for (const c of [...this.#all]) c.socket.destroy(codeError('backend removed', 'ECONNRESET'));
  }
}
