// `node dist/bench/parser.js [iterations]`: CPU per parsed response of meshd's
// upstream response parser (src/proxy/response-parser.ts), no sockets. Three
// small responses as a backend writes them; median of 5 runs each, in process
// CPU time so that other work on a shared machine counts less.
import { ResponseParser, type ResponseEvents } from '../src/proxy/response-parser.js';

const RESPONSES: Record<string, Buffer> = {
  'content-length': Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nServer: bench\r\nX-Request-Id: 0123456789abcdef\r\nContent-Length: 100\r\n\r\n' + 'x'.repeat(100)),
  chunked: Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n' + 'x'.repeat(64) + '\r\n24\r\n' + 'y'.repeat(36) + '\r\n0\r\n\r\n'),
  'no body (204)': Buffer.from('HTTP/1.1 204 No Content\r\nServer: bench\r\n\r\n'),
};

const iterations = Number(process.argv[2] ?? 200_000);
let bytes = 0;
let ends = 0;
const events: ResponseEvents = {
  onHead: () => {},
  onData: (c) => { bytes += c.length; },
  onEnd: () => { ends++; },
  onError: (m) => { throw new Error(m); },
};
const parser = new ResponseParser(events);

for (const [name, buf] of Object.entries(RESPONSES)) {
  const runs: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t0 = process.cpuUsage();
    for (let i = 0; i < iterations; i++) {
      parser.expect('GET');
      parser.execute(buf);
    }
    const t = process.cpuUsage(t0);
    runs.push((t.user + t.system) / iterations);
  }
  runs.sort((a, b) => a - b);
  console.log(`${name.padEnd(16)} ${runs[2]!.toFixed(3)} µs per response`);
}
if (ends !== iterations * 15) throw new Error(`expected ${iterations * 15} responses, parsed ${ends}`);
console.log(`(${iterations} iterations × 5 runs, ${bytes} body bytes)`);
