// `npm run bench:tls`: meshd's TLS edge (an `https` route) side by side with
// HAProxy (`bind ... ssl crt ... alpn h2,http/1.1`), same ECDSA P-256
// certificate and key, same backend (one nginx worker answering 100 bytes
// itself), at equal CPU: each proxy pinned to core 0 (HAProxy `nbthread 1`, meshd
// one process), this driver, the load generators and the backend on core 1.
//   handshakes: TLS 1.3: `openssl s_time -new`, a full handshake and one
//       HTTP/1.0 request per connection, no session resumption;
//   h2: HTTP/2 keep-alive over TLS (ALPN h2): h2load, 100 B responses.
// A bare node TLS server that answers by itself joins both, as the floor of
// what node's TLS and http2 cost before meshd does anything.
// Rounds are interleaved, the order reversed every other round; ratios are
// taken within each round.   --rounds N (5)  --duration S (5)
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { TestCA } from '../test/support/certs.js';
import { freePort, killAll, killTree, round, sleep, track } from './harness.js';
import type { LoadResult } from './load.js';
import { ensureTools, spawnMeshd, startHaproxy, startNginxOrigin, startNodeTls, type Running } from './proxies.js';
import type { Report, ScenarioResult } from './report.js';
import { log, machine, measure, sourceDir, type Ratio, type Target } from './rounds.js';

const PROXY_CPU = 0;
const CLIENT_CPU = 1;
/** Parallel `openssl s_time` processes; each makes one connection at a time. */
const S_TIME_PROCS = 8;
const H2 = { connections: 16, streams: 16 };
const BODY = 'x'.repeat(100);

function flag(name: string, def: number): number {
  const argv = process.argv.slice(2);
  const i = argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = Number(argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0 || v > 60) throw new Error(`--${name} needs a number from 1 to 60`);
  return v;
}

/** Runs a command to its end (killed after `ms`); resolves with its exit code and output. */
function run(cmd: string, args: string[], ms: number): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = track(spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (out += c));
    const timer = setTimeout(() => killTree(child), ms);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

/** `openssl s_time -new` in parallel processes: each connection a full handshake, `GET / HTTP/1.0`, read to the close. */
async function handshakes(port: number, seconds: number): Promise<LoadResult & { bytesPerConnection: number }> {
  const started = process.hrtime.bigint();
  const outs = await Promise.all(Array.from({ length: S_TIME_PROCS }, () =>
    run('openssl', ['s_time', '-connect', `127.0.0.1:${port}`, '-new', '-www', '/', '-time', String(seconds)], (seconds + 20) * 1000)));
  const wall = Number(process.hrtime.bigint() - started) / 1e9;
  let requests = 0;
  let bytes = 0;
  let errors = 0;
  for (const { code, out } of outs) {
    const m = /(\d+) connections in \d+ real seconds, (\d+) bytes read per connection/.exec(out);
    if (code !== 0 || !m) errors++;
    if (m) {
      requests += Number(m[1]);
      bytes += Number(m[1]) * Number(m[2]);
    }
  }
  return { requests, rps: Math.round(requests / wall), p50: NaN, p99: NaN, errors, non2xx: 0, connects: requests, seconds: round(wall, 1), bytesPerConnection: requests ? Math.round(bytes / requests) : 0 };
}

/** h2load over TLS with ALPN h2 for `seconds`; latencies from its per-request log. */
async function h2(port: number, seconds: number, dir: string): Promise<LoadResult> {
  const logFile = path.join(dir, `h2load-${port}.log`);
  const { code, out } = await run('h2load', ['-c', String(H2.connections), '-m', String(H2.streams), '-D', String(seconds), '--log-file', logFile,
    `https://127.0.0.1:${port}/`], (seconds + 20) * 1000);
  const finished = /finished in ([\d.]+)(m?s), ([\d.]+) req\/s/.exec(out);
  const counts = /requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(out);
  const status = /status codes: \d+ 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
  if (code !== 0 || !finished || !counts || !status) throw new Error(`h2load failed (${code}) on ${port}:\n${out}`);
  const latencies = fs.readFileSync(logFile, 'utf8').trim().split('\n').map((l) => Number(l.split('\t')[2]) / 1000).sort((a, b) => a - b);
  fs.rmSync(logFile, { force: true });
  const pct = (p: number) => round(latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN, 2);
  const done = Number(counts[2]);
  const secs = Number(finished[1]) / (finished[2] === 'ms' ? 1000 : 1);
  return { requests: done, rps: Math.round(done / secs), p50: pct(0.5), p99: pct(0.99), errors: Number(counts[4]) + Number(counts[5]) + Number(counts[6]),
    non2xx: Number(status[1]) + Number(status[2]) + Number(status[3]), connects: H2.connections, seconds: round(secs, 1) };
}

/** HAProxy's `show info` over its stats socket, as name → value. */
function haproxyInfo(socket: string): Promise<Record<string, string>> {
  return new Promise((resolve, reject) => {
    let text = '';
    const s = net.connect(socket, () => s.end('show info\n'));
    s.setEncoding('utf8').on('data', (c: string) => (text += c));
    s.on('error', reject);
    s.on('close', () => resolve(Object.fromEntries(text.split('\n').map((l) => l.split(': ')).filter((kv) => kv.length === 2) as [string, string][])));
  });
}

/**
 * The handshake client's own behaviour, checked on a server that counts: a node
 * TLS server (tickets on, as meshd's) with the same certificate, which records
 * for each connection whether it resumed a session. Run with the same client,
 * processes and flags as a measured run.
 */
async function checkFullHandshakes(cert: string, key: string): Promise<{ full: number; resumed: number }> {
  const counts = { full: 0, resumed: 0 };
  const server = tls.createServer({ cert, key, minVersion: 'TLSv1.2' }, (socket) => {
    counts[socket.isSessionReused() ? 'resumed' : 'full']++;
    socket.on('error', () => socket.destroy());
    socket.once('data', () => socket.end(`HTTP/1.0 200 OK\r\ncontent-length: ${BODY.length}\r\n\r\n${BODY}`));
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  await handshakes(port, 2);
  await new Promise<void>((r) => server.close(() => r()));
  return counts;
}

/** The first line of the answer to one request over TLS, and the protocol, suite and key exchange group negotiated. */
function preflight(port: number, alpn: string): Promise<{ status: string; protocol: string; cipher: string; group: string }> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'bench.test', rejectUnauthorized: false, ALPNProtocols: [alpn] }, () => {
      const eph = s.getEphemeralKeyInfo() as { name?: string; type?: string };
      const info = { protocol: `${s.getProtocol()} ${s.alpnProtocol || ''}`.trim(), cipher: s.getCipher().standardName, group: eph.name ?? eph.type ?? '' };
      if (alpn === 'h2') {
        s.destroy();
        return resolve({ status: '', ...info });
      }
      let text = '';
      s.setEncoding('utf8').on('data', (c: string) => (text += c));
      s.on('end', () => resolve({ status: text.split('\r\n')[0] ?? '', ...info }));
      s.write('GET / HTTP/1.0\r\n\r\n');
    });
    s.on('error', reject);
  });
}

/** meshd on core 0: one https route over the backend, the certificate from the routes file. */
async function startMeshdTls(dir: string, port: number, admin: number, backend: number, certFile: string, keyFile: string): Promise<Running> {
  const file = path.join(fs.mkdtempSync(path.join(dir, 'meshd-')), 'routes.yml');
  fs.writeFileSync(file, `routes:\n  - { name: web, publish: ${port}, mode: https, backends: ["127.0.0.1:${backend}"], health: { interval: 5s, timeout: 1s } }\n`
    + `tls:\n  certificates:\n    - { cert: ${JSON.stringify(certFile)}, key: ${JSON.stringify(keyFile)} }\n`);
  return spawnMeshd(file, admin, [port], 'warn', PROXY_CPU);
}

/** Requests per CPU-second of the proxy, meshd ÷ HAProxy: the comparison that holds when the client, not the proxy, sets the pace. */
const PER_CPU = 'meshd ÷ haproxy, req per CPU-second';
/** Not a proxy: node's TLS and http2 answering by themselves (bench/node-tls.ts), the floor under meshd's cost. */
const NODE = 'node alone (answers itself)';
const RATIOS: Ratio[] = [
  ['meshd ÷ haproxy, req/s', 'meshd https', 'haproxy https', 'rps'],
  [PER_CPU, 'haproxy https', 'meshd https', 'cpuUsPerReq'],
  ['meshd ÷ haproxy, CPU/req', 'meshd https', 'haproxy https', 'cpuUsPerReq'],
  ['meshd ÷ haproxy, p99', 'meshd https', 'haproxy https', 'p99'],
  [`${NODE} ÷ haproxy, req per CPU-second`, 'haproxy https', NODE, 'cpuUsPerReq'],
];

export interface TlsReport {
  date: string;
  machine: Report['machine'];
  h2load: string;
  options: { rounds: number; durationSeconds: number; proxyCpu: number; clientCpu: number; sTimeProcesses: number; h2: typeof H2 };
  certificate: string;
  negotiated: Record<string, { status: string; protocol: string; cipher: string; group: string }>;
  fullHandshakeCheck: { full: number; resumed: number };
  haproxyHandshakes: { clientConnections: number; haproxySslConns: number; reusePct: string }[];
  bytesPerConnection: Record<string, number[]>;
  scenarios: Record<string, ScenarioResult>;
  targets: { name: string; ratio: number; floor: number; met: boolean }[];
}

function markdown(r: TlsReport): string {
  const out = [`${r.date}: ${r.machine.nproc} cores (${r.machine.cpu}), Node ${r.machine.node}, ${r.machine.haproxy}, ${r.h2load}; ${r.options.rounds} interleaved rounds of ${r.options.durationSeconds} s.`];
  for (const [id, s] of Object.entries(r.scenarios)) {
    out.push('', `### (${id}) ${s.title}`, '', '| target | req/s | p50 ms | p99 ms | errors / non-2xx | CPU µs/req | proxy core busy | peak RSS MiB |', '|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const [label, c] of Object.entries(s.cells)) {
      const busy = c.cpuUsPerReq === null ? '' : `${Math.round((c.cpuUsPerReq * c.rps) / 1e4)} %`;
      const ms = (x: number) => (Number.isNaN(x) ? '–' : String(x));
      out.push(`| ${label} | ${c.rps} | ${ms(c.p50)} | ${ms(c.p99)} | ${c.errors} / ${c.non2xx} | ${c.cpuUsPerReq ?? ''} | ${busy} | ${c.peakRssKiB === null ? '' : (c.peakRssKiB / 1024).toFixed(1)} |`);
    }
    out.push('', '| ratio | per round | median |', '|---|---|---:|');
    for (const [name, v] of Object.entries(s.ratios)) out.push(`| ${name} | ${(s.perRound?.[name] ?? []).join(', ')} | ${v} |`);
  }
  out.push('', '| target | this run | met |', '|---|---:|---|');
  for (const t of r.targets) out.push(`| ${t.name} | ${t.ratio} | ${t.met ? 'yes' : 'no'} |`);
  return out.join('\n') + '\n';
}

async function main(): Promise<void> {
  const rounds = flag('rounds', 5);
  const duration = flag('duration', 5);
  ensureTools([['h2load', 'nghttp2-client']]);
  // This driver, and so every child not pinned elsewhere (load generators, backend), on core 1.
  spawnSync('taskset', ['-a', '-p', '-c', String(CLIENT_CPU), String(process.pid)], { stdio: 'ignore' });
  const bench = sourceDir();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshd-bench-tls-'));
  const ca = new TestCA();
  try {
    const pem = ca.issue(['bench.test']);
    const [certFile, keyFile, bothFile] = ['bench.crt', 'bench.key', 'bench.pem'].map((f) => path.join(dir, f)) as [string, string, string];
    fs.writeFileSync(certFile, pem.cert);
    fs.writeFileSync(keyFile, pem.key);
    fs.writeFileSync(bothFile, pem.cert + pem.key);
    const stats = path.join(dir, 'haproxy.sock');
    const [backendPort, mp, ma, hp, np] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
    const backend = await startNginxOrigin(dir, backendPort, BODY);
    const meshd = await startMeshdTls(dir, mp, ma, backendPort, certFile, keyFile);
    const haproxy = await startHaproxy(dir, { https: { port: hp, pem: bothFile } }, [backendPort], { threads: 1, cpu: PROXY_CPU, statsSocket: stats });
    const nodeTls = await startNodeTls(np, certFile, keyFile, PROXY_CPU);
    const targets: Target[] = [{ label: 'meshd https', port: mp, proc: meshd }, { label: 'haproxy https', port: hp, proc: haproxy }, { label: NODE, port: np, proc: nodeTls }];

    const negotiated: TlsReport['negotiated'] = {};
    for (const t of targets) {
      for (const alpn of ['http/1.1', 'h2']) negotiated[`${t.label} ${alpn}`] = await preflight(t.port, alpn);
    }
    log(`negotiated ${JSON.stringify(negotiated)}`);
    for (const [k, v] of Object.entries(negotiated)) if (v.status && !/ 200 /.test(v.status)) throw new Error(`${k}: ${v.status}`);
    const fullHandshakeCheck = await checkFullHandshakes(pem.cert, pem.key);
    log(`handshake client against a counting server: ${JSON.stringify(fullHandshakeCheck)}`);
    if (fullHandshakeCheck.resumed > 0) throw new Error('the handshake client resumed sessions');
    for (const t of targets) {
      await handshakes(t.port, 1);
      await h2(t.port, 1, dir);
    }
    log(`warm-up done; ${rounds} rounds of ${duration} s per target and scenario`);

    const haproxyHandshakes: TlsReport['haproxyHandshakes'] = [];
    const bytesPerConnection: Record<string, number[]> = {};
    const common = { rounds, ratios: RATIOS, alternate: true };
    const scenarios: Record<string, ScenarioResult> = {};
    scenarios.handshakes = await measure({
      ...common, id: 'handshakes', title: `TLS 1.3 full handshakes, one HTTP/1.0 request each (openssl s_time -new, ${S_TIME_PROCS} processes)`, connections: S_TIME_PROCS,
      load: async (t) => {
        const before = t.proc === haproxy ? await haproxyInfo(stats) : undefined;
        const r = await handshakes(t.port, duration);
        if (before) {
          const after = await haproxyInfo(stats);
          haproxyHandshakes.push({ clientConnections: r.requests, haproxySslConns: Number(after.CumSslConns) - Number(before.CumSslConns), reusePct: after.SslFrontendSessionReuse_pct ?? '' });
        }
        (bytesPerConnection[t.label] ??= []).push(r.bytesPerConnection);
        return r;
      },
    }, targets);
    await sleep(1000);
    scenarios.h2 = await measure({
      ...common, id: 'h2', title: `HTTP/2 over TLS, keep-alive, 100 B responses (h2load -c ${H2.connections} -m ${H2.streams})`, connections: H2.connections,
      load: (t) => h2(t.port, duration, dir),
    }, targets);

    const targetsMet = [
      // One core of openssl s_time cannot keep either proxy's core busy, so handshakes/s are equal by construction; per CPU-second they are not.
      { name: `TLS handshakes ≥ 0.8 × HAProxy (${PER_CPU})`, ratio: scenarios.handshakes.ratios[PER_CPU]!, floor: 0.8 },
      { name: 'HTTP/2 req/s ≥ 0.8 × HAProxy', ratio: scenarios.h2.ratios['meshd ÷ haproxy, req/s']!, floor: 0.8 },
    ].map((t) => ({ ...t, met: t.ratio >= t.floor }));
    const h2loadVersion = spawnSync('h2load', ['--version'], { encoding: 'utf8' }).stdout.trim();
    const report: TlsReport = {
      date: new Date().toISOString(), machine: machine(), h2load: h2loadVersion,
      options: { rounds, durationSeconds: duration, proxyCpu: PROXY_CPU, clientCpu: CLIENT_CPU, sTimeProcesses: S_TIME_PROCS, h2: H2 },
      certificate: 'ECDSA P-256, self-signed test CA (openssl), SNI bench.test',
      negotiated, fullHandshakeCheck, haproxyHandshakes, bytesPerConnection, scenarios, targets: targetsMet,
    };
    for (const p of [meshd, haproxy, nodeTls, backend]) killTree(p.child);
    process.stdout.write('\n' + markdown(report));
    const file = path.join(bench, 'results/tls-latest.json');
    fs.writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
    log(`\nwrote ${file}`);
  } finally {
    killAll();
    ca.remove();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:tls: ${(err as Error).stack ?? String(err)}\n`);
  killAll();
  process.exit(1);
});
