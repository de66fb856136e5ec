// A bare node TLS server that answers 100 bytes itself, over HTTP/2 (ALPN h2) or
// HTTP/1.x: what node's own TLS and http2 cost per request with no proxying,
// beside meshd in bench/tls.ts.   node node-tls.js PORT CERT KEY
import fs from 'node:fs';
import http2 from 'node:http2';

const [port, cert, key] = process.argv.slice(2) as [string, string, string];
const body = Buffer.alloc(100, 'x');
const server = http2.createSecureServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key), allowHTTP1: true }, (_req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
});
server.listen(Number(port), '127.0.0.1');
