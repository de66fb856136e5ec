// Benchmark backends, in their own process: keep-alive HTTP servers answering
// 100 bytes on any path and 64 KiB on /64k.   node backend.js PORT [PORT...]
import http from 'node:http';

const small = Buffer.alloc(100, 'x');
const large = Buffer.alloc(64 * 1024, 'y');
for (const port of process.argv.slice(2).map(Number)) {
  const server = http.createServer((req, res) => {
    const body = req.url === '/64k' ? large : small;
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length, 'x-backend': String(port) });
    res.end(body);
  });
  server.keepAliveTimeout = 60_000;
  server.listen(port, '127.0.0.1', () => process.send?.('ready'));
}
