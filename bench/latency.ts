// Cost of the per-route latency histograms on the hot path: what one request
// adds, as src/proxy does it (four clock reads: arrival, dispatch, response
// head, end; two observations), in ns of this process's CPU time.
//   npm run build && node dist/bench/latency.js
import { RouteLatency } from '../src/table/latency.js';

const N = 5_000_000;
const lat = new RouteLatency();
function round(record: boolean): number {
  const start = process.cpuUsage();
  let sink = 0;
  for (let i = 0; i < N; i++) {
    if (!record) {
      sink += i;
      continue;
    }
    const started = performance.now();
    const dispatched = performance.now();
    lat.upstream.observe((performance.now() - dispatched) / 1000);
    lat.total.observe((performance.now() - started) / 1000);
  }
  const used = process.cpuUsage(start);
  if (sink < 0) console.log(sink);
  return ((used.user + used.system) * 1000) / N;
}
const base: number[] = [];
const withHist: number[] = [];
for (let r = 0; r < 5; r++) {
  base.push(round(false));
  withHist.push(round(true));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`per request: ${(median(withHist) - median(base)).toFixed(1)} ns (four clock reads, two observations; median of 5 rounds of ${N})`);
