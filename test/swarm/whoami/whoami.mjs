// The swarm tests' and demo's app: says which task answered and what it saw of
// the client. MODE=counter counts page views instead, like the classic swarm
// demo: in Redis when REDIS=host:port is set (shared by every replica), else in memory.
// GET /health answers 200 once READY_AFTER_MS has passed, unless /tmp/unhealthy exists (tests create it).
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';

const port = Number(process.env.PORT ?? 80);
const delay = Number(process.env.DELAY_MS ?? 0);
const readyAt = Date.now() + Number(process.env.READY_AFTER_MS ?? 0);
const counting = process.env.MODE === 'counter';

/** INCR over one Redis connection (RESP), reconnecting after an error; replies come in order. */
function redisCounter(address) {
  const [host, p] = address.split(':');
  let socket;
  let waiting = [];
  let buffered = '';
  const connect = () => {
    socket = net.connect({ host, port: Number(p ?? 6379) });
    socket.setEncoding('utf8');
    socket.on('data', (chunk) => {
      buffered += chunk;
      let end;
      while ((end = buffered.indexOf('\r\n')) >= 0) {
        const line = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        const w = waiting.shift();
        if (line[0] === ':') w?.resolve(Number(line.slice(1)));
        else w?.reject(new Error(`redis: ${line}`));
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      for (const w of waiting) w.reject(new Error('redis connection closed'));
      waiting = [];
      buffered = '';
      socket = undefined;
    });
  };
  return (key) => new Promise((resolve, reject) => {
    if (!socket) connect();
    waiting.push({ resolve, reject });
    socket.write(`*2\r\n$4\r\nINCR\r\n$${Buffer.byteLength(key)}\r\n${key}\r\n`);
  });
}

let hits = 0;
const incr = process.env.REDIS ? redisCounter(process.env.REDIS) : async () => ++hits;

http.createServer((req, res) => {
  if (req.url === '/health') {
    res.statusCode = Date.now() < readyAt || fs.existsSync('/tmp/unhealthy') ? 503 : 200;
    return res.end();
  }
  if (counting) {
    incr('hits').then(
      (n) => res.end(`this page has been viewed ${n} times (by ${os.hostname()})\n`),
      (err) => { res.statusCode = 500; res.end(`${err.message}\n`); },
    );
    return;
  }
  const body = JSON.stringify({
    task: os.hostname(),
    forwardedFor: req.headers['x-forwarded-for'] ?? null,
    remote: req.socket.remoteAddress,
  }) + '\n';
  setTimeout(() => res.end(body), delay);
}).listen(port);
// Exit at once on SIGTERM (node's default would wait on keep-alive sockets):
// the harsh case, where meshd's drain and retry must keep clients whole.
process.on('SIGTERM', () => process.exit(0));
