// Benchmark backends, in their own process so they share no event loop with the
// load generator or a proxy: keep-alive HTTP servers answering 100 bytes on any
// path and 64 KiB on /64k, with the answering port in `x-backend`.
//   node backend.js PORT [PORT...]      (sends "ready" over IPC once all listen)
import http from 'node:http';

const small = Buffer.alloc(100, 'x');
const large = Buffer.alloc(64 * 1024, 'y');
const ports = process.argv.slice(2).map(Number);
let listening = 0;
for (const port of ports) {
  const server = http.createServer((req, res) => {
    const body = req.url === '/64k' ? large : small;
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length, 'x-backend': String(port) });
    res.end(body);
  });
  // Proxies keep upstream connections open between runs; don't let them expire mid-suite.
  server.keepAliveTimeout = 60_000;
  server.listen(port, '127.0.0.1', () => {
    if (++listening === ports.length) process.send?.('ready');
  });
}
