// The swarm tests' and demo's app: says which task answered and what it saw of
// the client (MODE=counter: counts page views instead, like the classic demo).
// GET /health answers 200 once READY_AFTER_MS has passed, unless /tmp/unhealthy exists (tests create it).
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';

const port = Number(process.env.PORT ?? 80);
const delay = Number(process.env.DELAY_MS ?? 0);
const readyAt = Date.now() + Number(process.env.READY_AFTER_MS ?? 0);
const counting = process.env.MODE === 'counter';
let hits = 0;
http.createServer((req, res) => {
  if (req.url === '/health') {
    res.statusCode = Date.now() < readyAt || fs.existsSync('/tmp/unhealthy') ? 503 : 200;
    return res.end();
  }
  if (counting) return res.end(`this page has been viewed ${++hits} times (by ${os.hostname()})\n`);
  const body = JSON.stringify({
    task: os.hostname(),
    forwardedFor: req.headers['x-forwarded-for'] ?? null,
    remote: req.socket.remoteAddress,
  }) + '\n';
  setTimeout(() => res.end(body), delay);
}).listen(port);
// Exit promptly on SIGTERM once in-flight requests are done (the default keeps keep-alive sockets open).
process.on('SIGTERM', () => process.exit(0));
