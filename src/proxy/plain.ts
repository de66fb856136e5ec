// The front of a plain-HTTP port: admits each connection and hands it to the
// HTTP/1.1 server (http.ts), or, on a port with an h2c route, to the HTTP/2
// front (h2.ts) when it opens with the HTTP/2 preface: gRPC clients with
// insecure credentials speak h2c with prior knowledge, never HTTP/1.1. Only
// those ports read a connection's first bytes before handing it over.
import net from 'node:net';
import type { ProxyContext } from './context.js';
import { createH2Front, withFronts } from './h2.js';
import { createHttpServer } from './http.js';
import { admitConnection } from './limits.js';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');


export function createPlainServer(ctx: ProxyContext, port: number): net.Server {
  const h1 = createHttpServer(ctx, port, 'http');
  // Node starts an HTTP server's header-timeout checks when it listens; this one never does.
  h1.emit('listening');
  const h2 = createH2Front(ctx, port, 'http');
  const server = net.createServer({ noDelay: true }, (socket) => {
    if (!admitConnection(ctx, socket)) return;
    if (!ctx.table.ports.get(port)?.h2c) return void h1.emit('connection', socket);
    let head: Buffer = Buffer.alloc(0);
    const onError = () => socket.destroy();
    const onTimeout = () => {
      ctx.stats.tripped('client-header-timeout');
      socket.destroy();
    };
    const onData = (chunk: Buffer) => {
      head = head.length ? Buffer.concat([head, chunk]) : chunk;
      const n = Math.min(head.length, PREFACE.length);
      const isH2 = head.subarray(0, n).equals(PREFACE.subarray(0, n));
      if (isH2 && head.length < PREFACE.length) return;
      socket.off('data', onData);
      socket.off('timeout', onTimeout);
      socket.off('error', onError);
      socket.setTimeout(0);
      // Both servers read what was already read from the stream's buffer first.
      socket.pause();
      socket.unshift(head);
      if (isH2) return h2.accept(socket);
      h1.emit('connection', socket);
      socket.resume();
    };
    socket.on('data', onData);
    socket.on('error', onError);
    // Until the first bytes say which protocol, the header timeout stands.
    socket.setTimeout(ctx.limits.headerTimeout, onTimeout);
  });
  server.once('close', () => h1.close());
  return withFronts(server, h1, h2);
}
