// `npm run bench`: meshd's hot path side by side with HAProxy, nginx and a direct
// connection, all on loopback in front of the same two backends. Runs are
// interleaved (A B C … A B C …) and reported as medians and as ratios taken in
// the same run, which is what stays comparable on a shared machine.
//   --rounds N (3)  --duration S (5)  --check (short run, compare with bench/baseline.json)
import { execFileSync, fork, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { measureIdle } from './idle.js';
import { cpuMicros, family, memoryKiB } from './proc.js';
import { killTree, startHaproxy, startMeshd, startNginx, track, type Ports, type Running } from './proxies.js';
import { measureTableUpdates } from './table-update.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SOURCE = path.resolve(HERE, '../../bench');
const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const CHECK = process.argv.includes('--check');
const ROUNDS = arg('rounds', CHECK ? 3 : 3);
const DURATION = arg('duration', CHECK ? 3 : 5);

interface LoadOut { requests: number; rps: number; p50: number; p99: number; errors: number; non2xx: number }
interface Target { label: string; port: number; proc?: Running }
interface Scenario { name: string; connections: number; path: string; close: boolean }

const SCENARIOS: Scenario[] = [
  { name: 'keep-alive, 100 B, 64 conns', connections: 64, path: '/', close: false },
  { name: 'new connection per request, 64 conns', connections: 64, path: '/', close: true },
  { name: 'keep-alive, 64 KiB body, 64 conns', connections: 64, path: '/64k', close: false },
];

function ensureTools(): void {
  const missing = ['haproxy', 'nginx'].filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
  if (missing.length === 0) return;
  process.stderr.write(`installing ${missing.join(', ')} from Debian's packages...\n`);
  execFileSync('sh', ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy nginx-light >/dev/null'], { stdio: 'inherit' });
}

function load(port: number, s: Scenario, duration: number): LoadOut {
  const opts = { url: `http://127.0.0.1:${port}${s.path}`, connections: s.connections, duration, ...(s.close ? { headers: { connection: 'close' } } : {}) };
  const out = execFileSync(process.execPath, [path.join(HERE, 'load.js'), JSON.stringify(opts)], { encoding: 'utf8', timeout: (duration + 30) * 1000 });
  return JSON.parse(out) as LoadOut;
}

/** The L7 engine choice: bare forwarders on http-proxy and on undici's dispatch, next to meshd itself. */
async function compareEngines(p: Ports, meshd: Running) {
  const start = async (engine: string, port: number): Promise<Running> => {
    const child = track(fork(path.join(HERE, 'engine-servers.js'), [engine, String(port), ...p.backends.map(String)], { stdio: 'ignore' }));
    await new Promise((r) => child.once('message', r));
    return { name: engine, pid: child.pid!, child };
  };
  const bare = [await start('http-proxy', 18040), await start('undici', 18041)];
  const targets: Target[] = [
    { label: 'meshd http', port: p.meshdHttp, proc: meshd },
    { label: 'bare undici dispatch', port: 18041, proc: bare[1] },
    { label: 'bare http-proxy', port: 18040, proc: bare[0] },
  ];
  const runs = new Map<string, { rps: number[]; cpu: number[] }>();
  for (let round = 0; round < ROUNDS; round++) {
    for (const t of targets) {
      const before = cpuOf(t.proc);
      const r = load(t.port, SCENARIOS[0]!, DURATION);
      const acc = runs.get(t.label) ?? { rps: [], cpu: [] };
      acc.rps.push(r.rps);
      acc.cpu.push((cpuOf(t.proc) - before) / r.requests);
      runs.set(t.label, acc);
      process.stderr.write(`engines | round ${round + 1} | ${t.label}: ${Math.round(r.rps)} req/s\n`);
    }
  }
  for (const b of bare) killTree(b.child);
  return Object.fromEntries([...runs].map(([label, a]) => [label, { rps: Math.round(median(a.rps)), cpuUsPerReq: Math.round(median(a.cpu)) }]));
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const cpuOf = (p?: Running) => (p ? family(p.pid).reduce((n, pid) => n + cpuMicros(pid), 0) : 0);

async function main(): Promise<void> {
  ensureTools();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshd-bench-'));
  const base = 18100;
  const p: Ports = { backends: [base, base + 1], meshdHttp: base + 10, meshdTcp: base + 11, meshdAdmin: base + 12, haproxyHttp: base + 20, haproxyTcp: base + 21, nginx: base + 30 };
  const backends = track(fork(path.join(HERE, 'backend.js'), p.backends.map(String), { stdio: 'ignore' }));
  await new Promise((r) => backends.once('message', r));

  const meshd = await startMeshd(dir, p);
  const haproxy = await startHaproxy(dir, p);
  const nginx = await startNginx(dir, p);
  const targets: Target[] = [
    { label: 'direct', port: p.backends[0] },
    { label: 'meshd http', port: p.meshdHttp, proc: meshd },
    { label: 'haproxy http', port: p.haproxyHttp, proc: haproxy },
    { label: 'nginx', port: p.nginx, proc: nginx },
    { label: 'meshd tcp', port: p.meshdTcp, proc: meshd },
    { label: 'haproxy tcp', port: p.haproxyTcp, proc: haproxy },
  ];
  for (const t of targets) load(t.port, SCENARIOS[0]!, 1); // warm-up

  const results: Record<string, Record<string, { rps: number; p50: number; p99: number; errors: number; cpuUsPerReq: number }>> = {};
  for (const s of (CHECK ? SCENARIOS.slice(0, 1) : SCENARIOS)) {
    const runs = new Map<string, { rps: number[]; p50: number[]; p99: number[]; errors: number; cpu: number[] }>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const t of targets) {
        const before = cpuOf(t.proc);
        const r = load(t.port, s, DURATION);
        const cpu = cpuOf(t.proc) - before;
        const acc = runs.get(t.label) ?? { rps: [], p50: [], p99: [], errors: 0, cpu: [] };
        acc.rps.push(r.rps); acc.p50.push(r.p50); acc.p99.push(r.p99);
        acc.errors += r.errors + r.non2xx;
        acc.cpu.push(r.requests ? cpu / r.requests : 0);
        runs.set(t.label, acc);
        process.stderr.write(`${s.name} | round ${round + 1} | ${t.label}: ${Math.round(r.rps)} req/s, p99 ${r.p99} ms\n`);
      }
    }
    results[s.name] = Object.fromEntries([...runs].map(([label, a]) => [label, {
      rps: Math.round(median(a.rps)), p50: median(a.p50), p99: median(a.p99), errors: a.errors, cpuUsPerReq: Math.round(median(a.cpu)),
    }]));
  }
  const peakRssKiB = { meshd: memoryKiB(meshd.pid, 'VmHWM'), haproxy: family(haproxy.pid).reduce((n, pid) => n + memoryKiB(pid, 'VmHWM'), 0), nginx: family(nginx.pid).reduce((n, pid) => n + memoryKiB(pid, 'VmHWM'), 0) };
  const idleTargets = [
    { label: 'meshd http', port: p.meshdHttp, pids: () => [meshd.pid] },
    { label: 'meshd tcp', port: p.meshdTcp, pids: () => [meshd.pid] },
    { label: 'haproxy http', port: p.haproxyHttp, pids: () => family(haproxy.pid) },
    { label: 'nginx', port: p.nginx, pids: () => family(nginx.pid) },
  ];
  const idle = CHECK ? undefined : await measureIdle(idleTargets, 1000);
  for (const proc of [haproxy, nginx]) killTree(proc.child);
  const engines = CHECK ? undefined : await compareEngines(p, meshd);
  const tableUpdate = CHECK ? undefined : await measureTableUpdates(dir, p.backends);
  killTree(meshd.child);
  killTree(backends);

  const first = results[SCENARIOS[0]!.name]!;
  const ratio = (a: string, b: string, s = first) => Math.round((s[a]!.rps / s[b]!.rps) * 100) / 100;
  const ratios = {
    'meshd http / haproxy http': ratio('meshd http', 'haproxy http'),
    'meshd tcp / haproxy tcp': ratio('meshd tcp', 'haproxy tcp'),
    'meshd http / direct': ratio('meshd http', 'direct'),
    'meshd http p99 / haproxy http p99': Math.round((first['meshd http']!.p99 / first['haproxy http']!.p99) * 100) / 100,
    'meshd http cpu / haproxy http cpu': Math.round((first['meshd http']!.cpuUsPerReq / first['haproxy http']!.cpuUsPerReq) * 100) / 100,
  };
  const report = {
    date: new Date().toISOString(), cores: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version,
    rounds: ROUNDS, durationSeconds: DURATION, results, ratios, peakRssKiB, idle, engines, tableUpdate,
  };
  printMarkdown(report);
  fs.rmSync(dir, { recursive: true, force: true });

  if (CHECK) {
    const baseline = JSON.parse(fs.readFileSync(path.join(SOURCE, 'baseline.json'), 'utf8')) as { ratio: number };
    const now = ratios['meshd http / haproxy http'];
    const floor = baseline.ratio * 0.85;
    process.stdout.write(`\ncheck: meshd http / haproxy http = ${now} (recorded ${baseline.ratio}, floor ${floor.toFixed(2)})\n`);
    if (now < floor) process.exit(1);
  } else {
    fs.mkdirSync(path.join(SOURCE, 'results'), { recursive: true });
    fs.writeFileSync(path.join(SOURCE, 'results/latest.json'), JSON.stringify(report, null, 2) + '\n');
  }
}

function printMarkdown(r: { results: Record<string, Record<string, { rps: number; p50: number; p99: number; errors: number; cpuUsPerReq: number }>>; ratios: Record<string, number>; peakRssKiB: Record<string, number>; idle?: unknown; engines?: unknown; tableUpdate?: unknown }): void {
  const lines: string[] = [];
  for (const [scenario, rows] of Object.entries(r.results)) {
    lines.push(`\n### ${scenario}\n`, '| target | req/s | p50 ms | p99 ms | errors | CPU µs/req |', '|---|---:|---:|---:|---:|---:|');
    for (const [label, v] of Object.entries(rows)) lines.push(`| ${label} | ${v.rps} | ${v.p50} | ${v.p99} | ${v.errors} | ${label === 'direct' ? '' : v.cpuUsPerReq} |`);
  }
  lines.push('\n### Ratios (keep-alive, 100 B)\n', '| ratio | value |', '|---|---:|', ...Object.entries(r.ratios).map(([k, v]) => `| ${k} | ${v} |`));
  lines.push('\n### Peak RSS under load (KiB)\n', ...Object.entries(r.peakRssKiB).map(([k, v]) => `- ${k}: ${v}`));
  if (r.engines) lines.push('\n### L7 engines (keep-alive, 100 B)\n', '```', JSON.stringify(r.engines, null, 2), '```');
  if (r.idle) lines.push('\n### 1,000 idle connections\n', '```', JSON.stringify(r.idle, null, 2), '```');
  if (r.tableUpdate) lines.push('\n### Table updates (meshd, 1,000 backends)\n', '```', JSON.stringify(r.tableUpdate, null, 2), '```');
  process.stdout.write(lines.join('\n') + '\n');
}

await main();
