// The load generator, in its own process so it shares no event loop with what it
// measures. Takes autocannon options as JSON in argv[2]; prints the result as JSON.
import autocannon from 'autocannon';

const opts = JSON.parse(process.argv[2]!) as autocannon.Options;
const result = await autocannon(opts);
process.stdout.write(JSON.stringify({
  requests: result.requests.total,
  rps: result.requests.average,
  p50: result.latency.p50,
  p99: result.latency.p99,
  errors: result.errors + result.timeouts,
  non2xx: result.non2xx,
  duration: result.duration,
}));
