// Minimal L7 forwarders for the engine comparison, one per process:
//   node engine-servers.js http-proxy|undici PORT BACKEND_PORT BACKEND_PORT
import http from 'node:http';
import httpProxy from 'http-proxy';
import { Pool, type Dispatcher } from 'undici';

const [engine, port, ...backends] = process.argv.slice(2);
let next = 0;

if (engine === 'http-proxy') {
  const targets = backends.map((b) => `http://127.0.0.1:${b}`);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const proxy = httpProxy.createProxyServer({ agent, xfwd: true });
  proxy.on('error', (_err, _req, res) => { (res as http.ServerResponse).writeHead?.(502); res.end(); });
  http.createServer((req, res) => proxy.web(req, res, { target: targets[next++ % targets.length] })).listen(Number(port), '127.0.0.1', () => process.send?.('ready'));
} else {
  const pools = backends.map((b) => new Pool(`http://127.0.0.1:${b}`, { connections: 256 }));
  http.createServer((req, res) => {
    const handler: Dispatcher.DispatchHandler = {
      onConnect() {},
      onHeaders(status, raw, resume) {
        const headers: string[] = [];
        for (let i = 0; i < raw.length; i += 2) {
          const name = raw[i]!.toString('latin1');
          if (name.toLowerCase() !== 'connection' && name.toLowerCase() !== 'keep-alive') headers.push(name, raw[i + 1]!.toString('latin1'));
        }
        res.writeHead(status, headers);
        res.on('drain', resume);
        return true;
      },
      onData: (chunk) => res.write(chunk),
      onComplete: () => res.end(),
      onError: () => { if (!res.headersSent) res.writeHead(502); res.end(); },
    };
    const headers: string[] = [];
    const raw = req.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) if (!/^(connection|keep-alive)$/i.test(raw[i]!)) headers.push(raw[i]!, raw[i + 1]!);
    pools[next++ % pools.length]!.dispatch({ path: req.url!, method: req.method as Dispatcher.HttpMethod, headers, body: null }, handler);
  }).listen(Number(port), '127.0.0.1', () => process.send?.('ready'));
}
