// The TLS front of an https port: a tls.Server that picks each client's
// certificate by SNI from the store, then hands the decrypted connection to the
// same HTTP/1.1 server a plain port uses (http.ts), so every limit and framing
// rule of that path holds here too, or to the HTTP/2 front (h2.ts) when ALPN
// chose h2.
import type net from 'node:net';
import tls from 'node:tls';
import { TLS_POLICY } from '../tls/policy.js';
import type { CertStore } from '../tls/store.js';
import type { HandshakeFailure, ProxyContext } from './context.js';
import { createH2Front, withFronts } from './h2.js';
import { createHttpServer } from './http.js';
import { admitConnection } from './limits.js';

/** What OpenSSL and node call a failed handshake, in /metrics' few words. */
function failureReason(err: NodeJS.ErrnoException, socket: tls.TLSSocket, certs: CertStore): HandshakeFailure {
  switch (err.code) {
    case 'ERR_TLS_HANDSHAKE_TIMEOUT': return 'timeout';
    case 'ECONNRESET': return 'reset';
    case 'ERR_SSL_HTTP_REQUEST': return 'plain-http';
    case 'ERR_SSL_UNSUPPORTED_PROTOCOL':
    case 'ERR_SSL_VERSION_TOO_LOW':
    case 'ERR_SSL_WRONG_VERSION_NUMBER': return 'protocol-version';
    case 'ERR_SSL_NO_SHARED_CIPHER': return 'no-shared-cipher';
  }
  const servername = (socket as { servername?: string | false }).servername;
  if (!certs.lookup(servername || undefined)) return 'no-certificate';
  return 'other';
}

/** The server's own context serves clients that send no SNI name: the default certificate, or none. */
function defaultContext(certs: CertStore): tls.SecureContextOptions {
  const def = certs.default;
  return { ...TLS_POLICY, ticketKeys: certs.ticketKeys, ...(def ? { cert: def.pem.cert, key: def.pem.key } : {}) };
}

export function createHttpsServer(ctx: ProxyContext, port: number): tls.Server {
  const { certs } = ctx;
  const h1 = createHttpServer(ctx, port, 'https');
  // Node starts an HTTP server's header-timeout checks when it listens; this one
  // never does (connections come from the TLS front), so start them by hand.
  h1.emit('listening');
  const h2 = createH2Front(ctx, port, 'https');
  const server = tls.createServer({
    ...defaultContext(certs),
    ALPNProtocols: ['h2', 'http/1.1'],
    // Contexts are built once per certificate, in the store; a handshake only looks one up.
    SNICallback: (name, cb) => cb(null, certs.lookup(name)?.context),
    handshakeTimeout: ctx.limits.headerTimeout,
  });
  const onChange = () => server.setSecureContext(defaultContext(certs));
  certs.on('change', onChange);
  server.once('close', () => {
    certs.off('change', onChange);
    h1.close();
  });

  server.on('connection', (socket: net.Socket) => admitConnection(ctx, socket));
  server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: tls.TLSSocket) => {
    const reason = failureReason(err, socket, certs);
    ctx.stats.handshakeFailed(reason);
    ctx.log.debug({ port, reason, code: err.code }, 'TLS handshake failed');
    // With a listener here, node leaves closing to it (a handshake timeout would otherwise hold the socket).
    socket.destroy();
  });
  server.on('secureConnection', (socket: tls.TLSSocket) => (socket.alpnProtocol === 'h2' ? h2.accept(socket) : h1.emit('connection', socket)));
  return withFronts(server, h1, h2);
}
