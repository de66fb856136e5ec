// One soak backend (bench/soak.ts), a process the soak kills and restarts:
//   node soak-backend.js ID HTTP_PORT TCP_PORT RECEIPTS_FILE
// HTTP: `x-backend: ID`, the body is the request's `x-req` (and `ok` on /health).
// TCP: for each line `REQ\n` it answers `ID REQ\n`.
// Every request ID is appended to RECEIPTS_FILE when it arrives, with a
// synchronous write, so the record survives a SIGKILL: the soak can tell which
// failed requests were on this backend when it was killed.
// IPC: {slow: ms} delays every answer but /health's; "ready" is sent once both listen.
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';

const [id, httpPort, tcpPort, receipts] = process.argv.slice(2) as [string, string, string, string];
const fd = fs.openSync(receipts, 'a');
let slowMs = 0;
const received = (req: string) => fs.writeSync(fd, `${req}\n`);
const later = (f: () => void) => (slowMs ? setTimeout(f, slowMs) : f());

process.on('message', (m: { slow?: number }) => {
  if (typeof m.slow === 'number') slowMs = m.slow;
});

const web = http.createServer((req, res) => {
  if (req.url === '/health') return void res.end('ok');
  const reqId = String(req.headers['x-req'] ?? '');
  received(reqId);
  later(() => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(reqId), 'x-backend': id });
    res.end(reqId);
  });
});
web.keepAliveTimeout = 60_000;

const echo = net.createServer((socket) => {
  let buffered = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const reqId = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      received(reqId);
      later(() => socket.writable && socket.write(`${id} ${reqId}\n`));
    }
  });
  socket.on('error', () => socket.destroy());
});

let listening = 0;
const up = () => ++listening === 2 && process.send?.('ready');
web.listen(Number(httpPort), '127.0.0.1', up);
echo.listen(Number(tcpPort), '127.0.0.1', up);
