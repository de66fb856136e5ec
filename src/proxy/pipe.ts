// Connects a client stream to a backend picked round-robin and pipes bytes both
// ways: L4 connections and L7 upgrades (WebSocket) alike. A connect that fails
// before any byte went upstream is retried once on another backend. Half-close
// passes through: a client that shuts its write side still gets the whole answer.
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { errorCodeOf } from '../core/errors.js';
import { reportFailure, reportSuccess } from '../health/outlier.js';
import type { Backend, Closable, Route } from '../table/table.js';
import type { ProxyContext } from './context.js';
import { tcpIdleTimeout } from './limits.js';

export interface PipeOptions {
  /** Bytes for the backend before the client's own (a PROXY header, a replayed request head). */
  preamble?: () => string | Buffer;
  /** No backend could take the client: answer it (or not) and close. */
  giveUp: (code: 'NO_HEALTHY_BACKEND' | 'BACKEND_FAILED') => void;
}

class Piped implements Closable {
  constructor(readonly client: Duplex, readonly upstream: net.Socket) {}
  /** Drain: the connection may finish on its own; nothing to do until the timeout. */
  close(): void {}
  destroy(): void {
    this.upstream.destroy();
    this.client.destroy();
  }
}

/**
 * Bytes one way, with backpressure, and the end passed on (half-close): what
 * stream.pipe does, with fewer listeners per connection. Errors and closes are
 * handled once per connection in pipeToBackend.
 */
function relay(from: Duplex, to: Duplex): void {
  const resume = () => from.resume();
  from.on('data', (chunk: Buffer) => {
    if (!to.write(chunk)) {
      from.pause();
      to.once('drain', resume);
    }
  });
  from.once('end', () => to.end());
}

export function pipeToBackend(ctx: ProxyContext, route: Route, client: Duplex, opts: PipeOptions, failed?: Backend): void {
  // Only source-hash needs the client's address: reading it is a getpeername() on each new connection.
  const b = route.pick(failed, route.spec.lb === 'source-hash' ? (client as net.Socket).remoteAddress : undefined);
  if (!b) {
    // On a retry with no other backend left, the failure to report is the first one.
    const code = failed ? 'BACKEND_FAILED' : 'NO_HEALTHY_BACKEND';
    ctx.stats.count(code);
    return opts.giveUp(code);
  }
  b.acquire();
  const upstream = net.connect({ host: b.host, port: b.port, allowHalfOpen: true, noDelay: true });
  const piped = new Piped(client, upstream);
  b.resources.add(piped);
  let connected = false;
  upstream.setTimeout(ctx.connectTimeout, () => upstream.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })));

  upstream.once('connect', () => {
    connected = true;
    upstream.setTimeout(0);
    reportSuccess(b);
    if (opts.preamble) upstream.write(opts.preamble());
    relay(client, upstream);
    relay(upstream, client);
    // A socket's timer restarts on every read and write, so the client's covers both directions.
    if (client instanceof net.Socket) {
      client.setTimeout(tcpIdleTimeout(ctx, route), () => {
        ctx.stats.tripped('tcp-idle-timeout');
        client.destroy();
      });
    }
  });
  upstream.on('error', (err) => {
    if (!connected) {
      reportFailure(b, err, ctx.log);
      if (!failed && !client.destroyed) {
        ctx.stats.retries++;
        return pipeToBackend(ctx, route, client, opts, b);
      }
      ctx.stats.count('BACKEND_FAILED');
      return opts.giveUp('BACKEND_FAILED');
    }
    b.countError(errorCodeOf(err));
    client.destroy();
  });
  client.once('close', () => {
    // The client is gone; whatever the backend still sends has nowhere to go.
    if (!upstream.destroyed && (!connected || !upstream.writableEnded)) upstream.destroy();
  });
  upstream.once('close', () => {
    b.resources.delete(piped);
    b.release();
    if (connected && !client.destroyed && !client.writableEnded) client.destroy();
  });
}
