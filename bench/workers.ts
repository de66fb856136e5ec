// `npm run bench:workers`: meshd beside HAProxy with wrk (a C load generator
// that leaves the proxies most of the CPU), in front of one nginx worker that
// answers by itself.
//   equal CPU: meshd --workers 1 and HAProxy nbthread 1, each pinned to core 0;
//     wrk and nginx pinned to core 1;
//   whole machine: meshd --workers auto and HAProxy's default threads (one per
//     core), nothing pinned; then meshd --workers 1 the same way, for what the
//     workers add.
// Scenarios: keep-alive 100 B, a new connection per request (Connection: close)
// and keep-alive 64 KiB, each through an L7 (http) and an L4 (tcp) route. Rounds
// are interleaved and the order of the two proxies swapped every other round;
// ratios are taken within a round and their median reported.
//   --rounds N (3)  --duration S (5)  --connections N (64)
//   --check           whole machine, L7 keep-alive only; exits 1 when meshd ÷
//                     HAProxy is more than 15 % below bench/baseline.json
//   --write-baseline  records this run's whole-machine L7 keep-alive ratio there
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, killAll, killTree, median, round, sleep, track } from './harness.js';
import { familyCpu } from './proc.js';
import { ensureTools, startHaproxy, startMeshd, startNginxOrigin, type Running } from './proxies.js';
import { machine, sourceDir } from './rounds.js';

const PROXY_CPU = 0;
const CLIENT_CPU = 1;
/** bench:check fails below this share of the recorded ratio. */
const CHECK_FLOOR = 0.85;

function flag(name: string, def: number): number {
  const argv = process.argv.slice(2);
  const i = argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = Number(argv[i + 1]);
  if (!Number.isInteger(v) || v <= 0 || v > 1000) throw new Error(`--${name} needs a whole number from 1 to 1000`);
  return v;
}

interface Run {
  rps: number;
  p99Ms: number;
  errors: number;
  cpuUsPerReq: number;
}

/** A wrk latency figure ("812.00us", "3.45ms", "1.02s") in ms. */
function wrkMs(text: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(text);
  if (!m) return NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
}

/** wrk for `seconds`, pinned to `cpu` if given; the proxy's CPU read from /proc around it. */
function wrk(url: string, close: boolean, seconds: number, connections: number, proxy: Running, cpu?: number): Promise<Run> {
  const args = ['-t', '2', '-c', String(connections), '-d', `${seconds}s`, '--latency', ...(close ? ['-H', 'Connection: close'] : []), url];
  const [cmd, argv] = cpu === undefined ? ['wrk', args] : ['taskset', ['-c', String(cpu), 'wrk', ...args]];
  const cpuBefore = familyCpu(proxy.pid);
  return new Promise((resolve, reject) => {
    const child = track(spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'] }));
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.once('exit', (code) => {
      const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
      const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
      const p99Ms = wrkMs(/^\s+99%\s+(\S+)$/m.exec(out)?.[1] ?? '');
      if (code !== 0 || !Number.isFinite(rps) || !Number.isFinite(p99Ms)) return reject(new Error(`wrk failed (${code}): ${out}`));
      // Error answers mean the scenario is broken, not slow: the run stops rather than measure them.
      const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
      if (non2xx > 0) return reject(new Error(`${url}: ${non2xx} answers were not 2xx`));
      const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
      const errors = socketErrors ? socketErrors.slice(1).reduce((n, x) => n + Number(x), 0) : 0;
      resolve({ rps: Math.round(rps), p99Ms, errors, cpuUsPerReq: round((familyCpu(proxy.pid) - cpuBefore) / requests, 1) });
    });
  });
}

type SetupId = 'equal' | 'whole' | 'whole-one';

interface Setup {
  id: SetupId;
  name: string;
  meshdWorkers: string;
  haproxyThreads: number | undefined;
  pinned: boolean;
}

const SETUPS: Setup[] = [
  { id: 'equal', name: 'equal CPU (core 0 each): meshd --workers 1, HAProxy nbthread 1', meshdWorkers: '1', haproxyThreads: 1, pinned: true },
  { id: 'whole', name: `whole machine (${os.availableParallelism()} CPUs): meshd --workers auto, HAProxy default threads`, meshdWorkers: 'auto', haproxyThreads: undefined, pinned: false },
  { id: 'whole-one', name: 'whole machine, meshd in one process: meshd --workers 1, HAProxy default threads', meshdWorkers: '1', haproxyThreads: undefined, pinned: false },
];

interface Scenario {
  name: string;
  mode: 'http' | 'tcp';
  close: boolean;
  path: string;
}

const SCENARIOS: Scenario[] = [
  { name: 'L7 keep-alive', mode: 'http', close: false, path: '/' },
  { name: 'L7 new connection per request', mode: 'http', close: true, path: '/' },
  { name: 'L7 keep-alive 64 KiB', mode: 'http', close: false, path: '/64k' },
  { name: 'L4 keep-alive', mode: 'tcp', close: false, path: '/' },
  { name: 'L4 new connection per request', mode: 'tcp', close: true, path: '/' },
  { name: 'L4 keep-alive 64 KiB', mode: 'tcp', close: false, path: '/64k' },
];

/** The targets, each a ratio to HAProxy in the same run: req/s at least `min`, or p99 at most `max`. */
const TARGETS: { setup: SetupId; scenario: string; figure: 'rps' | 'p99'; min?: number; max?: number }[] = [
  { setup: 'equal', scenario: 'L7 keep-alive', figure: 'rps', min: 0.8 },
  { setup: 'equal', scenario: 'L4 keep-alive', figure: 'rps', min: 1.0 },
  { setup: 'whole', scenario: 'L7 keep-alive', figure: 'rps', min: 0.8 },
  { setup: 'whole', scenario: 'L4 keep-alive', figure: 'rps', min: 1.0 },
  { setup: 'equal', scenario: 'L7 new connection per request', figure: 'rps', min: 0.8 },
  { setup: 'whole', scenario: 'L7 new connection per request', figure: 'rps', min: 0.8 },
  ...(['equal', 'whole'] as const).flatMap((setup) => ['L7 keep-alive', 'L4 keep-alive'].map((scenario) => ({ setup, scenario, figure: 'p99' as const, max: 2 }))),
];

interface ScenarioResult {
  name: string;
  meshd: Run;
  haproxy: Run;
  /** Medians of per-round ratios, meshd ÷ HAProxy. */
  ratios: { rps: number; p99: number; cpuUsPerReq: number };
  rounds: { meshd: Run; haproxy: Run }[];
  errors: { meshd: number; haproxy: number };
}

interface SetupResult { id: SetupId; name: string; scenarios: ScenarioResult[] }

async function runSetup(setup: Setup, scenarios: Scenario[], dir: string, rounds: number, seconds: number, connections: number): Promise<SetupResult> {
  const cpu = (c: number) => (setup.pinned ? c : undefined);
  const origin = await freePort();
  const backend = await startNginxOrigin(dir, origin, 'x'.repeat(100), cpu(CLIENT_CPU));
  const ports = { http: await freePort(), tcp: await freePort() };
  const meshd = await startMeshd(dir, { ...ports, admin: await freePort() }, [origin], setup.meshdWorkers, cpu(PROXY_CPU));
  const hports = { http: await freePort(), tcp: await freePort() };
  const haproxy = await startHaproxy(dir, hports, [origin], { threads: setup.haproxyThreads, cpu: cpu(PROXY_CPU) });
  const out: SetupResult = { id: setup.id, name: setup.name, scenarios: [] };
  try {
    // Let meshd's first probes pass.
    await sleep(1500);
    for (const s of scenarios) {
      const targets = [{ proc: meshd, url: `http://127.0.0.1:${ports[s.mode]}${s.path}` }, { proc: haproxy, url: `http://127.0.0.1:${hports[s.mode]}${s.path}` }];
      for (const t of targets) await wrk(t.url, s.close, 1, connections, t.proc, cpu(CLIENT_CPU));
      const runs: Run[][] = [[], []];
      for (let r = 0; r < rounds; r++) {
        for (const i of r % 2 === 0 ? [0, 1] : [1, 0]) runs[i]!.push(await wrk(targets[i]!.url, s.close, seconds, connections, targets[i]!.proc, cpu(CLIENT_CPU)));
      }
      const med = (i: number): Run => ({
        rps: median(runs[i]!.map((x) => x.rps)), p99Ms: median(runs[i]!.map((x) => x.p99Ms)),
        errors: runs[i]!.reduce((n, x) => n + x.errors, 0), cpuUsPerReq: median(runs[i]!.map((x) => x.cpuUsPerReq)),
      });
      const ratio = (k: keyof Run) => round(median(runs[0]!.map((m, r) => m[k] / runs[1]![r]![k])), 2);
      const result: ScenarioResult = {
        name: s.name, meshd: med(0), haproxy: med(1),
        ratios: { rps: ratio('rps'), p99: ratio('p99Ms'), cpuUsPerReq: ratio('cpuUsPerReq') },
        rounds: runs[0]!.map((m, r) => ({ meshd: m, haproxy: runs[1]![r]! })),
        errors: { meshd: med(0).errors, haproxy: med(1).errors },
      };
      out.scenarios.push(result);
      process.stderr.write(`${setup.id} | ${s.name} | ${result.meshd.rps} ÷ ${result.haproxy.rps} req/s = ${result.ratios.rps} | p99 ${result.meshd.p99Ms} / ${result.haproxy.p99Ms} ms | ${result.meshd.cpuUsPerReq} / ${result.haproxy.cpuUsPerReq} µs/req\n`);
    }
  } finally {
    for (const p of [meshd, haproxy, backend]) killTree(p.child);
  }
  return out;
}

function markdown(setups: SetupResult[], header: string): string {
  const lines = [header, ''];
  for (const s of setups) {
    lines.push(`### ${s.name}`, '', '| scenario | meshd req/s | HAProxy req/s | meshd ÷ HAProxy req/s | p99 ms meshd / HAProxy (ratio) | CPU µs/req meshd / HAProxy | socket errors meshd / HAProxy |', '|---|---:|---:|---:|---:|---:|---:|');
    for (const r of s.scenarios) {
      lines.push(`| ${r.name} | ${r.meshd.rps} | ${r.haproxy.rps} | ${r.ratios.rps} | ${r.meshd.p99Ms} / ${r.haproxy.p99Ms} (${r.ratios.p99}) | ${r.meshd.cpuUsPerReq} / ${r.haproxy.cpuUsPerReq} | ${r.errors.meshd} / ${r.errors.haproxy} |`);
    }
    lines.push('');
  }
  const byId = new Map(setups.map((s) => [s.id, s]));
  const judged = TARGETS.flatMap((t) => {
    const r = byId.get(t.setup)?.scenarios.find((x) => x.name === t.scenario);
    if (!r) return [];
    const value = r.ratios[t.figure];
    const met = t.min !== undefined ? value >= t.min : value <= t.max!;
    const bound = t.min !== undefined ? `≥ ${t.min}` : `≤ ${t.max} ×`;
    return [`| ${t.setup === 'equal' ? 'equal CPU' : 'whole machine'}, ${t.scenario}, ${t.figure === 'rps' ? 'req/s' : 'p99'} ${bound} | ${value} | ${met ? 'yes' : 'no'} |`];
  });
  if (judged.length) lines.push('### Targets (meshd ÷ HAProxy, median of per-round ratios)', '', '| target | this run | met |', '|---|---:|---|', ...judged, '');
  return lines.join('\n');
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const check = argv.includes('--check');
  const rounds = flag('rounds', 3);
  const seconds = flag('duration', check ? 3 : 5);
  const connections = flag('connections', 64);
  ensureTools([['wrk', 'wrk']]);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshd-bench-workers-'));
  const started = new Date().toISOString();
  const header = `${started}, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} at the start; ${rounds} rounds of ${seconds} s, ${connections} connections, wrk -t 2`;
  const setups: SetupResult[] = [];
  try {
    for (const setup of check ? SETUPS.filter((s) => s.id === 'whole') : SETUPS) {
      setups.push(await runSetup(setup, check ? SCENARIOS.slice(0, 1) : SCENARIOS, dir, rounds, seconds, connections));
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const text = markdown(setups, header);
  process.stdout.write(text);
  const bench = sourceDir();
  const ratio = setups.find((s) => s.id === 'whole')!.scenarios[0]!.ratios.rps;
  if (!check) {
    fs.mkdirSync(path.join(bench, 'results'), { recursive: true });
    fs.writeFileSync(path.join(bench, 'results/workers-latest.json'), JSON.stringify({ date: started, machine: machine(), loadAverage: os.loadavg(), options: { rounds, seconds, connections }, setups }, null, 2) + '\n');
    fs.writeFileSync(path.join(bench, 'results/workers-latest.md'), text);
  }
  const metric = 'meshd --workers auto ÷ HAProxy default threads, req/s, L7 keep-alive 100 B, wrk, whole machine';
  if (argv.includes('--write-baseline')) {
    fs.writeFileSync(path.join(bench, 'baseline.json'), JSON.stringify({ ratio, metric, recorded: started, rounds, durationSeconds: seconds }, null, 2) + '\n');
    process.stderr.write(`wrote ${path.join(bench, 'baseline.json')}: ${ratio}\n`);
  }
  if (check) {
    const baseline = JSON.parse(fs.readFileSync(path.join(bench, 'baseline.json'), 'utf8')) as { ratio: number };
    const floor = round(baseline.ratio * CHECK_FLOOR, 3);
    const ok = ratio >= floor;
    process.stdout.write(`\ncheck: ${metric} = ${ratio} (baseline ${baseline.ratio}, floor ${floor}): ${ok ? 'ok' : 'REGRESSION'}\n`);
    if (!ok) process.exitCode = 1;
  }
}

main().then(() => {
  killAll();
  process.exit(process.exitCode ?? 0);
}, (err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  killAll();
  process.exit(1);
});
