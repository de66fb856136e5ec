// One request on its way through one backend, as the upstream client sees it:
// the backend's answer goes to the client, a failure is reported to health and
// either retried on another backend or answered with an error. The client side
// (an HTTP/1.1 response, an HTTP/2 stream) is what each subclass supplies.
import { errorCodeOf, isConnectError, type ErrorCode } from '../core/errors.js';
import { reportFailure, reportSuccess } from '../health/outlier.js';
import type { Backend, Route } from '../table/table.js';
import type { ProxyContext } from './context.js';
import type { Sink } from './upstream.js';

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

export abstract class ProxiedRequest implements Sink {
  #done = false;
  readonly #dispatched = performance.now();
  abort: (() => void) | undefined;
  /** A Set-Cookie for the answer: a sticky route's client gets (or changes) its backend. */
  setCookie: string | undefined;

  constructor(
    readonly ctx: ProxyContext,
    readonly route: Route,
    readonly b: Backend,
    readonly method: string,
    readonly hasBody: boolean,
    readonly retried: boolean,
    /** performance.now() when the client's request arrived (before any retry). */
    readonly started: number,
  ) {}

  /** Subclasses call it as the backend's head arrives. */
  protected headArrived(): void {
    this.route.latency.upstream.observe((performance.now() - this.#dispatched) / 1000);
  }

  /** The client has gone (or will take nothing more), so errors are not answered. */
  protected abstract clientGone(): boolean;
  /** Writes body bytes; false when the client cannot take more yet, and `resume` is then called once it can. */
  protected abstract write(chunk: Buffer, resume: () => void): boolean;
  protected abstract end(): void;
  /** Passes the backend's trailers on, where the client's protocol can carry them. */
  protected abstract trailers(pairs: string[]): void;
  /** Sends the same request to another backend than this one. */
  protected abstract retry(): void;
  protected abstract fail(code: ErrorCode): void;
  abstract onHead(status: number, reason: string, headers: string[], last?: boolean): void;

  get done(): boolean {
    return this.#done;
  }

  /** The client went away before the response ended. */
  cancel(): void {
    if (this.#done) return;
    this.finish();
    this.abort?.();
  }

  onData(chunk: Buffer, resume: () => void): boolean {
    // After the client left, the rest of the response is read and dropped, so the connection can be reused.
    return this.#done || this.write(chunk, resume);
  }

  onTrailers(pairs: string[]): void {
    if (!this.#done) this.trailers(pairs);
  }

  onEnd(): void {
    if (this.#done) return;
    this.finish();
    reportSuccess(this.b);
    this.end();
    this.route.latency.total.observe((performance.now() - this.started) / 1000);
  }

  onError(err: NodeJS.ErrnoException, sent: boolean): void {
    if (this.#done) return;
    this.finish();
    if (this.clientGone()) return;
    const code = errorCodeOf(err);
    const timeout = code === 'HEADERS_TIMEOUT';
    if (timeout) this.b.countError(code);
    else reportFailure(this.b, err, this.ctx.log);
    // Nothing reached the backend (refused connect), or a request without body
    // that is safe to repeat lost its keep-alive connection before any answer.
    const safe = isConnectError(err) || (!this.hasBody && IDEMPOTENT.has(this.method));
    if (!this.retried && !sent && !timeout && safe) {
      this.ctx.stats.retries++;
      return this.retry();
    }
    this.ctx.log.debug({ route: this.route.spec.name, backend: this.b.key, code }, 'upstream request failed');
    this.fail(timeout ? 'BACKEND_TIMEOUT' : 'BACKEND_FAILED');
  }

  protected finish(): void {
    this.#done = true;
    this.b.release();
  }
}
