// The load generator, in its own process so it shares no event loop with what it
// measures:   node load.js '{"url":…,"connections":64,"duration":4,"close":false}'
// Prints one JSON line (LoadResult). Latencies are taken from each client's
// `response` event (float ms), not from autocannon's histogram, which keeps whole
// milliseconds only (a p50 of "0 ms" says nothing on loopback).
import autocannon from 'autocannon';

export interface LoadSpec {
  url: string;
  connections: number;
  duration: number;
  /** A new TCP connection for every request (see the note on `close` below). */
  close?: boolean;
}

export interface LoadResult {
  requests: number;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
  /** TCP connections autocannon opened (≈ requests when `close` is set). */
  connects: number;
  seconds: number;
}

/** The autocannon 8 client internals that `close` mode has to touch. */
interface ClientInternals {
  _connect(): void;
  pipelinedRequests: { clear(): void };
}

const spec = JSON.parse(process.argv[2]!) as LoadSpec;
const latencies: number[] = [];
let connects = 0;

const started = process.hrtime.bigint();
const result = await autocannon({
  url: spec.url,
  connections: spec.connections,
  duration: spec.duration,
  // `close`: each request says `Connection: close`, the server closes after the
  // answer and autocannon reconnects. autocannon (8.0.0) then keeps a stale entry
  // in its pending-request queue (it already wrote the next request onto the
  // closing socket), so every later response is timed from an older start and
  // latencies grow with the run's length (p50 of seconds). Clearing the queue on
  // each reconnect fixes the timing. (`reconnectRate: 1` is no alternative: it
  // drops the response it reconnects on from the counts, so it reports 0 req/s.)
  ...(spec.close ? { headers: { connection: 'close' } } : {}),
  setupClient(client) {
    client.on('response', (_status: number, _bytes: number, ms: number) => latencies.push(ms));
    const c = client as unknown as ClientInternals;
    const connect = c._connect.bind(c);
    c._connect = () => {
      connects++;
      if (spec.close) c.pipelinedRequests.clear();
      connect();
    };
  },
});
const seconds = Number(process.hrtime.bigint() - started) / 1e9;

latencies.sort((a, b) => a - b);
const pct = (p: number) => (latencies.length ? Math.round(latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))]! * 100) / 100 : 0);
const out: LoadResult = {
  requests: result.requests.total,
  rps: Math.round(result.requests.total / result.duration),
  p50: pct(0.5),
  p99: pct(0.99),
  errors: result.errors + result.timeouts,
  non2xx: result.non2xx,
  connects,
  seconds: Math.round(seconds * 10) / 10,
};
process.stdout.write(JSON.stringify(out) + '\n');
