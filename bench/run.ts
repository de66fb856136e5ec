// `npm run bench`: meshd L7 and L4 side by side with HAProxy, nginx and a direct
// connection, all on loopback in front of the same two backends. Runs are
// interleaved (A B C … A B C …) and reported as medians and as ratios taken
// within each round, which is what stays comparable on a shared machine.
//   --rounds N (3)  --duration S (4)
//   --check           short run (meshd http and haproxy http only); exits 1 when
//                     meshd ÷ HAProxy (L7, scenario a) is >15% below bench/baseline.json
//   --write-baseline  record this run's ratio in bench/baseline.json
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startEngines, ENGINES } from './engines.js';
import { HERE, freePort, killAll, killTree, median, round, runLoad, sleep } from './harness.js';
import { measureIdle, type IdleResult } from './idle.js';
import { familyCpu, familyKiB, RssSampler } from './proc.js';
import { ensureTools, startBackends, startHaproxy, startMeshd, startNginx, toolVersions, type Running } from './proxies.js';
import { markdown, type Cell, type Report, type ScenarioResult } from './report.js';
import { measureTableUpdates } from './table-update.js';

interface Options { rounds: number; duration: number; check: boolean; writeBaseline: boolean }

function options(): Options {
  const argv = process.argv.slice(2);
  const num = (name: string, def: number) => {
    const i = argv.indexOf(`--${name}`);
    if (i < 0) return def;
    const v = Number(argv[i + 1]);
    if (!Number.isFinite(v) || v <= 0 || v > 60) throw new Error(`--${name} needs a number from 1 to 60`);
    return v;
  };
  const check = argv.includes('--check');
  return { rounds: num('rounds', 3), duration: num('duration', check ? 3 : 4), check, writeBaseline: argv.includes('--write-baseline') };
}

interface Scenario { id: string; title: string; path: string; close: boolean; connections: number }

const SCENARIOS: Scenario[] = [
  { id: 'a', title: 'keep-alive, 100 B responses, 64 connections', path: '/', close: false, connections: 64 },
  { id: 'b', title: 'new connection per request (Connection: close), 100 B, 64 connections', path: '/', close: true, connections: 64 },
  { id: 'c', title: 'keep-alive, 64 KiB responses, 64 connections', path: '/64k', close: false, connections: 64 },
];

/** What the load generator is pointed at; `proc` is whose CPU and memory are sampled (none for direct). */
interface Target { label: string; port: number; proc?: Running }

/** The ratios reported for each scenario: [name, numerator, denominator, figure]. */
const RATIOS: [string, string, string, 'rps' | 'p99' | 'cpuUsPerReq'][] = [
  ['meshd http ÷ haproxy http, req/s', 'meshd http', 'haproxy http', 'rps'],
  ['meshd http ÷ haproxy http, p99', 'meshd http', 'haproxy http', 'p99'],
  ['meshd http ÷ haproxy http, CPU/req', 'meshd http', 'haproxy http', 'cpuUsPerReq'],
  ['meshd http ÷ nginx, req/s', 'meshd http', 'nginx', 'rps'],
  ['meshd tcp ÷ haproxy tcp, req/s', 'meshd tcp', 'haproxy tcp', 'rps'],
  ['meshd tcp ÷ haproxy tcp, p99', 'meshd tcp', 'haproxy tcp', 'p99'],
  ['meshd tcp ÷ haproxy tcp, CPU/req', 'meshd tcp', 'haproxy tcp', 'cpuUsPerReq'],
  ['meshd http ÷ direct, req/s', 'meshd http', 'direct', 'rps'],
  ['meshd tcp ÷ direct, req/s', 'meshd tcp', 'direct', 'rps'],
];
const CHECK_RATIO = 'meshd http ÷ haproxy http, req/s';

const log = (line: string) => process.stderr.write(line + '\n');

/** The source bench/ dir (results, baseline): npm runs from the project root; else beside the default build. */
function sourceDir(): string {
  for (const d of [path.resolve(process.cwd(), 'bench'), path.resolve(HERE, '../../bench')]) {
    if (fs.existsSync(path.join(d, 'run.ts'))) return d;
  }
  throw new Error('cannot find the bench/ sources: run from the project root');
}

function machine(): Report['machine'] {
  const cpu = /^model name\s*:\s*(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? os.cpus()[0]?.model ?? 'unknown';
  return { nproc: os.availableParallelism(), cpu, node: process.version, kernel: os.release(), ...toolVersions() };
}

/** Interleaved rounds of one scenario over the targets. */
async function measure(s: Scenario, targets: Target[], opt: Options): Promise<ScenarioResult> {
  const runs = new Map<string, { rps: number; p50: number; p99: number; errors: number; non2xx: number; cpu: number | null; rss: number | null }[]>();
  for (let n = 1; n <= opt.rounds; n++) {
    for (const t of targets) {
      const cpuBefore = t.proc ? familyCpu(t.proc.pid) : 0;
      const rss = t.proc ? new RssSampler(t.proc.pid) : undefined;
      const r = await runLoad({ url: `http://127.0.0.1:${t.port}${s.path}`, connections: s.connections, duration: opt.duration, close: s.close });
      const peak = rss?.stop() ?? null;
      const cpu = t.proc && r.requests ? (familyCpu(t.proc.pid) - cpuBefore) / r.requests : null;
      runs.set(t.label, [...(runs.get(t.label) ?? []), { ...r, cpu, rss: peak }]);
      log(`(${s.id}) round ${n}/${opt.rounds} ${t.label.padEnd(32)} ${String(r.rps).padStart(6)} req/s  p99 ${r.p99} ms  ${cpu === null ? '' : `${round(cpu, 1)} µs/req`}${r.errors + r.non2xx ? `  errors ${r.errors} non-2xx ${r.non2xx}` : ''}`);
    }
  }
  const cells: Record<string, Cell> = {};
  for (const [label, rs] of runs) {
    const cpus = rs.map((r) => r.cpu).filter((c): c is number => c !== null);
    const rsses = rs.map((r) => r.rss).filter((c): c is number => c !== null);
    cells[label] = {
      rps: Math.round(median(rs.map((r) => r.rps))),
      p50: round(median(rs.map((r) => r.p50)), 2),
      p99: round(median(rs.map((r) => r.p99)), 2),
      errors: rs.reduce((n, r) => n + r.errors, 0),
      non2xx: rs.reduce((n, r) => n + r.non2xx, 0),
      cpuUsPerReq: cpus.length ? round(median(cpus), 1) : null,
      peakRssKiB: rsses.length ? Math.max(...rsses) : null,
      rounds: rs.map((r) => ({ rps: r.rps, p99: r.p99, cpuUsPerReq: r.cpu === null ? null : round(r.cpu, 1) })),
    };
  }
  const ratios: Record<string, number> = {};
  for (const [name, a, b, figure] of RATIOS) {
    const ra = cells[a]?.rounds;
    const rb = cells[b]?.rounds;
    if (!ra || !rb) continue;
    const per = ra.map((x, i) => (x[figure] ?? NaN) / (rb[i]![figure] ?? NaN)).filter(Number.isFinite);
    if (per.length) ratios[name] = round(median(per), 2);
  }
  return { title: s.title, connections: s.connections, cells, ratios };
}

/** 1,000 idle connections through fresh instances, so RSS is not that of a heap grown under load. */
async function idlePhase(dir: string, backends: number[]): Promise<Record<string, IdleResult>> {
  const [mh, mt, ma, hh, ht, ng] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  const meshd = await startMeshd(dir, { http: mh, tcp: mt, admin: ma }, backends);
  const haproxy = await startHaproxy(dir, { http: hh, tcp: ht }, backends);
  const nginx = await startNginx(dir, ng, backends);
  const targets: Target[] = [
    { label: 'meshd http', port: mh, proc: meshd }, { label: 'meshd tcp', port: mt, proc: meshd },
    { label: 'haproxy http', port: hh, proc: haproxy }, { label: 'haproxy tcp', port: ht, proc: haproxy },
    { label: 'nginx', port: ng, proc: nginx },
  ];
  const out: Record<string, IdleResult> = {};
  try {
    for (const t of targets) {
      await runLoad({ url: `http://127.0.0.1:${t.port}/`, connections: 8, duration: 1 }); // code paths warm, pools open
      await sleep(1000);
      out[t.label] = await measureIdle(t.port, t.proc!.pid, 1000);
      log(`idle ${t.label.padEnd(14)} ${JSON.stringify(out[t.label])}`);
    }
  } finally {
    for (const p of [meshd, haproxy, nginx]) killTree(p.child);
  }
  return out;
}

async function suite(opt: Options, dir: string): Promise<Report> {
  const backendPorts = [await freePort(), await freePort()];
  const backends = await startBackends(backendPorts);
  const p = { mh: await freePort(), mt: await freePort(), ma: await freePort(), hh: await freePort(), ht: await freePort(), ng: await freePort() };
  const meshd = await startMeshd(dir, opt.check ? { http: p.mh, admin: p.ma } : { http: p.mh, tcp: p.mt, admin: p.ma }, backendPorts);
  const haproxy = await startHaproxy(dir, opt.check ? { http: p.hh } : { http: p.hh, tcp: p.ht }, backendPorts);
  const nginx = opt.check ? undefined : await startNginx(dir, p.ng, backendPorts);
  const engines = opt.check ? [] : await startEngines(backendPorts);

  const main: Target[] = opt.check
    ? [{ label: 'meshd http', port: p.mh, proc: meshd }, { label: 'haproxy http', port: p.hh, proc: haproxy }]
    : [
        { label: 'direct', port: backendPorts[0]! },
        { label: 'meshd http', port: p.mh, proc: meshd },
        { label: 'haproxy http', port: p.hh, proc: haproxy },
        { label: 'nginx', port: p.ng, proc: nginx! },
        { label: 'meshd tcp', port: p.mt, proc: meshd },
        { label: 'haproxy tcp', port: p.ht, proc: haproxy },
      ];
  const withEngines = [...main, ...engines];
  for (const t of withEngines) await runLoad({ url: `http://127.0.0.1:${t.port}/`, connections: 64, duration: 1 }); // warm-up
  log(`warm-up done; ${opt.rounds} rounds of ${opt.duration} s per target and scenario`);

  const scenarios: Record<string, ScenarioResult> = {};
  for (const s of opt.check ? SCENARIOS.slice(0, 1) : SCENARIOS) scenarios[s.id] = await measure(s, s.id === 'a' ? withEngines : main, opt);

  const peakRssKiB: Record<string, number> = { meshd: familyKiB(meshd.pid, 'VmHWM'), haproxy: familyKiB(haproxy.pid, 'VmHWM') };
  if (nginx) peakRssKiB['nginx (master + workers)'] = familyKiB(nginx.pid, 'VmHWM');
  for (const proc of [meshd, haproxy, nginx, ...engines.map((e) => e.proc)]) if (proc) killTree(proc.child);

  const report: Report = {
    date: new Date().toISOString(),
    machine: machine(),
    options: { rounds: opt.rounds, durationSeconds: opt.duration, check: opt.check },
    scenarios,
    peakRssKiB,
  };
  if (!opt.check) {
    const a = scenarios.a!.cells;
    report.engines = Object.fromEntries(['meshd http', ...Object.values(ENGINES)].map((label) => [label, {
      rps: a[label]!.rps, p99: a[label]!.p99, cpuUsPerReq: a[label]!.cpuUsPerReq, vsMeshd: round(a[label]!.rps / a['meshd http']!.rps, 2),
    }]));
    report.idle = await idlePhase(dir, backendPorts);
    report.tableUpdate = await measureTableUpdates(dir, backendPorts, 64);
    log(`table updates ${JSON.stringify(report.tableUpdate)}`);
  }
  killTree(backends.child);
  return report;
}

async function main(): Promise<void> {
  const opt = options();
  ensureTools();
  const bench = sourceDir();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshd-bench-'));
  let report: Report;
  try {
    report = await suite(opt, dir);
  } finally {
    killAll();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  process.stdout.write('\n' + markdown(report));

  const ratio = report.scenarios.a!.ratios[CHECK_RATIO]!;
  if (!opt.check) {
    fs.mkdirSync(path.join(bench, 'results'), { recursive: true });
    fs.writeFileSync(path.join(bench, 'results/latest.json'), JSON.stringify(report, null, 2) + '\n');
    log(`\nwrote ${path.join(bench, 'results/latest.json')}`);
  }
  if (opt.writeBaseline) {
    const baseline = { ratio, metric: `${CHECK_RATIO}, scenario (a)`, recorded: report.date, rounds: opt.rounds, durationSeconds: opt.duration };
    fs.writeFileSync(path.join(bench, 'baseline.json'), JSON.stringify(baseline, null, 2) + '\n');
    log(`wrote ${path.join(bench, 'baseline.json')}: ${ratio}`);
  }
  if (opt.check) {
    const baseline = JSON.parse(fs.readFileSync(path.join(bench, 'baseline.json'), 'utf8')) as { ratio: number };
    const floor = round(baseline.ratio * 0.85, 3);
    const ok = ratio >= floor;
    process.stdout.write(`\ncheck: ${CHECK_RATIO} = ${ratio} (baseline ${baseline.ratio}, floor ${floor}): ${ok ? 'ok' : 'REGRESSION'}\n`);
    if (!ok) process.exitCode = 1;
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
  killAll();
  process.exit(1);
});
