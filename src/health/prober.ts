// Active health checks: every backend of the live table is probed from this
// node on its route's interval, by TCP connect, HTTP GET or, on h2c routes, a
// gRPC call over cleartext HTTP/2. A new backend is
// probed at once and receives work after its first pass. `fall` failures in a
// row take it out; `rise` passes in a row bring it back, and also end a passive
// ejection, so a backend that failed returns only once it answers again. While
// a backend is between states it is probed at the fast interval, so a new task
// joins and a wrongly ejected one returns within a fraction of a second.
import http2 from 'node:http2';
import net from 'node:net';
import { Agent, request } from 'undici';
import type { Logger } from '../core/log.js';
import { errorCodeOf } from '../core/errors.js';
import type { Backend, Table } from '../table/table.js';

export type ProbeResult = { ok: true } | { ok: false; error: string };

export function probeTcp(host: string, port: number, timeout: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (r: ProbeResult) => {
      socket.destroy();
      resolve(r);
    };
    socket.setTimeout(timeout, () => done({ ok: false, error: 'timeout' }));
    socket.once('connect', () => done({ ok: true }));
    socket.once('error', (err) => done({ ok: false, error: errorCodeOf(err) }));
  });
}

export async function probeHttp(dispatcher: Agent, host: string, port: number, path: string, timeout: number): Promise<ProbeResult> {
  try {
    const res = await request(`http://${host.includes(':') ? `[${host}]` : host}:${port}${path}`, {
      dispatcher,
      method: 'GET',
      headers: { 'user-agent': 'meshd-health' },
      headersTimeout: timeout,
      bodyTimeout: timeout,
      signal: AbortSignal.timeout(timeout),
    });
    await res.body.dump();
    return res.statusCode >= 200 && res.statusCode < 400 ? { ok: true } : { ok: false, error: `status ${res.statusCode}` };
  } catch (err) {
    return { ok: false, error: errorCodeOf(err) };
  }
}

const HEALTH_CHECK = '/grpc.health.v1.Health/Check';

/**
 * An h2c route's probe: `path` called as a gRPC method with an empty message
 * (gRPC servers answer nothing else). It passes on a 2xx/3xx answer whose
 * grpc-status, if any, is 0; for the standard health service
 * (/grpc.health.v1.Health/Check) the reply must also say SERVING.
 */
export function probeH2c(host: string, port: number, path: string, timeout: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const session = http2.connect(`http://${host.includes(':') ? `[${host}]` : host}:${port}`, {
      createConnection: () => net.connect({ host, port }),
      settings: { enablePush: false },
    });
    const timer = setTimeout(() => done({ ok: false, error: 'timeout' }), timeout);
    function done(r: ProbeResult): void {
      clearTimeout(timer);
      session.destroy();
      resolve(r);
    }
    session.on('error', (err) => done({ ok: false, error: errorCodeOf(err) }));
    let status = 0;
    let grpcStatus: string | undefined;
    const body: Buffer[] = [];
    const req = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', 'user-agent': 'meshd-health' });
    req.on('response', (h) => {
      status = Number(h[':status']);
      grpcStatus = h['grpc-status'] as string | undefined;
    });
    req.on('trailers', (h) => (grpcStatus = (h['grpc-status'] as string | undefined) ?? grpcStatus));
    req.on('data', (c: Buffer) => body.push(c));
    req.on('error', (err) => done({ ok: false, error: errorCodeOf(err) }));
    req.on('end', () => {
      if (status < 200 || status >= 400) return done({ ok: false, error: `status ${status}` });
      if (grpcStatus !== undefined && grpcStatus !== '0') return done({ ok: false, error: `grpc-status ${grpcStatus}` });
      // HealthCheckResponse after the 5-byte message prefix: field 1 (0x08), SERVING = 1; an empty message is UNKNOWN.
      const msg = Buffer.concat(body).subarray(5);
      if (path === HEALTH_CHECK && !(msg[0] === 0x08 && msg[1] === 1)) return done({ ok: false, error: 'not serving' });
      done({ ok: true });
    });
    // An empty request message: not compressed, length 0.
    req.end(Buffer.alloc(5));
  });
}

/** The probe interval for backends between states (HAProxy's `fastinter`). */
const FAST_INTERVAL_MS = 200;
const fastInterval = (b: Backend) => Math.min(b.route.spec.health.interval, FAST_INTERVAL_MS);

/** Applies one probe result to a backend's rise/fall state. */
export function recordProbe(b: Backend, result: ProbeResult, rise: number, fall: number): void {
  if (result.ok) {
    b.failStreak = 0;
    b.okStreak++;
    b.lastProbeError = undefined;
    // One pass proves a new backend; one that went down or was ejected needs `rise`.
    if (b.pending && !b.activeDown && !b.ejected) b.setFlag('pending', false);
    if (b.okStreak >= rise) {
      b.setFlag('pending', false);
      b.consecutiveFailures = 0;
      b.setFlag('activeDown', false);
      b.setFlag('ejected', false);
    }
  } else {
    b.okStreak = 0;
    b.failStreak++;
    b.lastProbeError = result.error;
    if (b.failStreak >= fall) b.setFlag('activeDown', true);
  }
}

export class Prober {
  readonly #table: Table;
  readonly #log: Logger;
  readonly #timers = new Map<Backend, NodeJS.Timeout>();
  /** Backends with a probe in flight; their next probe is scheduled when it ends. */
  readonly #inFlight = new Set<Backend>();
  readonly #agent = new Agent({ keepAliveTimeout: 1, pipelining: 0 });
  #stopped = false;

  constructor(table: Table, log: Logger) {
    this.#table = table;
    this.#log = log;
    table.on('applied', () => this.reconcile());
    // Live traffic ejected a backend: probe it soon rather than at the next interval.
    table.on('health', (b, flag, value) => {
      if (flag !== 'ejected' || !value || this.#inFlight.has(b) || !this.#timers.has(b)) return;
      clearTimeout(this.#timers.get(b));
      this.#schedule(b, fastInterval(b));
    });
  }

  /** Starts probes for new backends and stops those of backends that left. */
  reconcile(): void {
    if (this.#stopped) return;
    const live = new Set<Backend>();
    for (const b of this.#table.allBackends()) {
      if (b.draining) continue;
      live.add(b);
      // A new backend at once; a known one (e.g. after a restart of meshd) with some jitter.
      if (!this.#timers.has(b)) this.#schedule(b, b.pending ? 0 : Math.random() * Math.min(b.route.spec.health.interval, 1000));
    }
    for (const [b, timer] of this.#timers) {
      if (live.has(b)) continue;
      clearTimeout(timer);
      this.#timers.delete(b);
    }
  }

  #schedule(b: Backend, delay: number): void {
    const timer = setTimeout(() => void this.#run(b), delay);
    timer.unref();
    this.#timers.set(b, timer);
  }

  async #run(b: Backend): Promise<void> {
    const h = b.route.spec.health;
    this.#inFlight.add(b);
    const result = !h.path
      ? await probeTcp(b.host, b.port, h.timeout)
      : b.route.spec.backend === 'h2c'
        ? await probeH2c(b.host, b.port, h.path, h.timeout)
        : await probeHttp(this.#agent, b.host, b.port, h.path, h.timeout);
    this.#inFlight.delete(b);
    if (this.#stopped || !this.#timers.has(b)) return;
    const wasDown = b.activeDown || b.ejected;
    recordProbe(b, result, h.rise, h.fall);
    const isDown = b.activeDown || b.ejected;
    if (wasDown !== isDown) {
      this.#log.info({ route: b.route.spec.name, backend: b.key, healthy: !isDown, error: b.lastProbeError }, isDown ? 'backend failed its health checks' : 'backend passed its health checks');
    }
    this.#schedule(b, b.settling ? fastInterval(b) : h.interval);
  }

  stop(): void {
    this.#stopped = true;
    for (const t of this.#timers.values()) clearTimeout(t);
    this.#timers.clear();
    void this.#agent.close();
  }
}
