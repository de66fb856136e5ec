// L4: each client connection is piped to one backend picked round-robin. A
// connect that fails before any byte went upstream is retried once on another
// backend. Half-close passes through: a client that shuts its write side still
// gets the whole answer.
import net from 'node:net';
import { errorCodeOf } from '../core/errors.js';
import { reportFailure, reportSuccess } from '../health/outlier.js';
import type { Backend, Closable, Route } from '../table/table.js';
import type { ProxyContext } from './context.js';
import { proxyV2Header } from './proxy-protocol.js';

export function createTcpServer(ctx: ProxyContext, port: number): net.Server {
  return net.createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
    ctx.stats.connections++;
    client.once('close', () => ctx.stats.connections--);
    client.on('error', () => client.destroy());
    const route = ctx.table.ports.get(port)?.default;
    if (!route) {
      ctx.stats.count('NO_ROUTE');
      client.destroy();
      return;
    }
    connect(ctx, route, client, undefined);
  });
}

class Piped implements Closable {
  constructor(readonly client: net.Socket, readonly upstream: net.Socket) {}
  /** Drain: the connection may finish on its own; nothing to do until the timeout. */
  close(): void {}
  destroy(): void {
    this.upstream.destroy();
    this.client.destroy();
  }
}

function connect(ctx: ProxyContext, route: Route, client: net.Socket, failed: Backend | undefined): void {
  const b = route.pick(failed);
  if (!b) {
    ctx.stats.count('NO_HEALTHY_BACKEND');
    client.destroy();
    return;
  }
  b.active++;
  b.requests++;
  const upstream = net.connect({ host: b.host, port: b.port, allowHalfOpen: true, noDelay: true });
  const piped = new Piped(client, upstream);
  b.resources.add(piped);
  let connected = false;
  upstream.setTimeout(ctx.connectTimeout, () => upstream.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })));

  upstream.once('connect', () => {
    connected = true;
    upstream.setTimeout(0);
    reportSuccess(b);
    if (route.spec.proxyProtocol) {
      upstream.write(proxyV2Header(
        { address: client.remoteAddress, port: client.remotePort },
        { address: client.localAddress, port: client.localPort },
      ));
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  upstream.on('error', (err) => {
    if (!connected) {
      reportFailure(b, err, ctx.log);
      if (!failed && !client.destroyed) {
        ctx.stats.retries++;
        connect(ctx, route, client, b);
        return;
      }
      ctx.stats.count('BACKEND_FAILED');
    } else {
      b.countError(errorCodeOf(err));
    }
    client.destroy();
  });
  client.once('close', () => {
    // The client is gone; whatever the backend still sends has nowhere to go.
    if (!upstream.destroyed && (!connected || upstream.writableEnded === false)) upstream.destroy();
  });
  upstream.once('close', () => {
    b.resources.delete(piped);
    b.release();
    if (connected && !client.destroyed && !client.writableEnded) client.destroy();
  });
}
