// Tiny example apps for the local demo and the tests: a whoami that says which
// instance answered, and a counter (the classic swarm demo, kept in memory).
import http from 'node:http';

export function whoami(name: string): http.Server {
  return http.createServer((req, res) => {
    if (req.url === '/health') return void res.end('ok\n');
    const body = JSON.stringify({
      name,
      method: req.method,
      url: req.url,
      host: req.headers.host ?? null,
      forwardedFor: req.headers['x-forwarded-for'] ?? null,
      remote: req.socket.remoteAddress,
    }) + '\n';
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
}

export function counter(): http.Server {
  let hits = 0;
  return http.createServer((req, res) => {
    if (req.url === '/health') return void res.end('ok\n');
    hits++;
    res.end(`this page has been viewed ${hits} times\n`);
  });
}

export function listen(server: http.Server, port: number, host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve((server.address() as { port: number }).port));
  });
}
