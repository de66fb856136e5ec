// L4: each client connection is piped to one backend picked round-robin (see
// pipe.ts), with a PROXY protocol v2 header first when the route asks for it.
import net from 'node:net';
import type { ProxyContext } from './context.js';
import { admitConnection, admitToRoute } from './limits.js';
import { pipeToBackend } from './pipe.js';
import { proxyV2Header } from './proxy-protocol.js';

export function createTcpServer(ctx: ProxyContext, port: number): net.Server {
  return net.createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
    if (!admitConnection(ctx, client)) return;
    client.on('error', () => client.destroy());
    const route = ctx.table.ports.get(port)?.default;
    if (!route) {
      ctx.stats.count('NO_ROUTE');
      client.destroy();
      return;
    }
    if (!admitToRoute(ctx, route, client)) return void client.destroy();
    pipeToBackend(ctx, route, client, {
      ...(route.spec.proxyProtocol ? {
        preamble: () => proxyV2Header(
          { address: client.remoteAddress, port: client.remotePort },
          { address: client.localAddress, port: client.localPort },
        ),
      } : {}),
      giveUp: () => client.destroy(),
    });
  });
}
