// Request-duration histograms per route, recorded on the hot path as plain
// counts in fixed buckets (a loop over 16 bounds and three additions) and
// turned into Prometheus histograms only when /metrics is scraped.

/** Upper bounds in seconds, fine below a millisecond where a proxy's own time lies. */
export const BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

export class Histogram {
  /** Per bucket (not cumulative); the last one is +Inf. */
  readonly counts = new Float64Array(BUCKETS.length + 1);
  sum = 0;
  count = 0;

  observe(seconds: number): void {
    let i = 0;
    while (i < BUCKETS.length && seconds > BUCKETS[i]!) i++;
    this.counts[i]!++;
    this.sum += seconds;
    this.count++;
  }
}

/** L7: from the request to the end of its answer (`total`), and from dispatch to the backend's response head (`upstream`). */
export class RouteLatency {
  readonly total = new Histogram();
  readonly upstream = new Histogram();
}
