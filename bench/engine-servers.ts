// Bare L7 forwarders for the engine comparison (bench/engines.ts), one per
// process, round-robin over the backends with keep-alive upstream connections:
//   node engine-servers.js http-proxy|undici PORT BACKEND_PORT...
import http from 'node:http';
import httpProxy from 'http-proxy';
import { Pool, type Dispatcher } from 'undici';

const [engine, port, ...backends] = process.argv.slice(2);
let next = 0;
const HOP = /^(connection|keep-alive|proxy-connection|te|trailer|transfer-encoding|upgrade)$/i;

function httpProxyHandler(): http.RequestListener {
  const targets = backends.map((b) => `http://127.0.0.1:${b}`);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const proxy = httpProxy.createProxyServer({ agent, xfwd: true });
  proxy.on('error', (_err, _req, res) => {
    if (res instanceof http.ServerResponse && !res.headersSent) res.writeHead(502);
    res.end();
  });
  return (req, res) => proxy.web(req, res, { target: targets[next++ % targets.length] });
}

/** undici's legacy dispatch handler API: raw header arrays in and out, no header objects. */
function undiciHandler(): http.RequestListener {
  const pools = backends.map((b) => new Pool(`http://127.0.0.1:${b}`, { connections: 256 }));
  return (req, res) => {
    const handler: Dispatcher.DispatchHandler = {
      onConnect() {},
      onHeaders(status, raw, resume) {
        const headers: string[] = [];
        for (let i = 0; i < raw.length; i += 2) {
          const name = raw[i]!.toString('latin1');
          if (!HOP.test(name)) headers.push(name, raw[i + 1]!.toString('latin1'));
        }
        res.writeHead(status, headers);
        res.on('drain', resume);
        return true;
      },
      onData: (chunk) => res.write(chunk),
      onComplete: () => res.end(),
      onError: () => {
        if (!res.headersSent) res.writeHead(502);
        res.end();
      },
    };
    const headers: string[] = [];
    const raw = req.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) if (!HOP.test(raw[i]!)) headers.push(raw[i]!, raw[i + 1]!);
    // Same forwarding headers as meshd and http-proxy (xfwd) add.
    headers.push('x-forwarded-for', req.socket.remoteAddress ?? '', 'x-forwarded-proto', 'http');
    pools[next++ % pools.length]!.dispatch({ path: req.url!, method: req.method as Dispatcher.HttpMethod, headers, body: null }, handler);
  };
}

const server = http.createServer({ keepAlive: true, keepAliveTimeout: 30_000 }, engine === 'http-proxy' ? httpProxyHandler() : undiciHandler());
server.listen(Number(port), '127.0.0.1', () => process.send?.('ready'));
