// `npm run bench`: meshd L7 and L4 side by side with HAProxy, nginx and a direct
// connection, all on loopback in front of the same two backends. Runs are
// interleaved (A B C … A B C …) and reported as medians and as ratios taken
// within each round, which is what stays comparable on a shared machine.
//   --rounds N (3)  --duration S (4)
// (bench:check and its baseline are in workers.ts, with wrk.)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startEngines, ENGINES } from './engines.js';
import { freePort, killAll, killTree, round, runLoad, sleep } from './harness.js';
import { measureIdle, type IdleResult } from './idle.js';
import { familyKiB } from './proc.js';
import { ensureTools, startBackends, startHaproxy, startMeshd, startNginx } from './proxies.js';
import { markdown, type Report, type ScenarioResult } from './report.js';
import { log, machine, measure, sourceDir, type Ratio, type Target } from './rounds.js';
import { measureTableUpdates } from './table-update.js';

interface Options { rounds: number; duration: number }

function options(): Options {
  const argv = process.argv.slice(2);
  const num = (name: string, def: number) => {
    const i = argv.indexOf(`--${name}`);
    if (i < 0) return def;
    const v = Number(argv[i + 1]);
    if (!Number.isFinite(v) || v <= 0 || v > 60) throw new Error(`--${name} needs a number from 1 to 60`);
    return v;
  };
  return { rounds: num('rounds', 3), duration: num('duration', 4) };
}

interface Scenario { id: string; title: string; path: string; close: boolean; connections: number }

const SCENARIOS: Scenario[] = [
  { id: 'a', title: 'keep-alive, 100 B responses, 64 connections', path: '/', close: false, connections: 64 },
  { id: 'b', title: 'new connection per request (Connection: close), 100 B, 64 connections', path: '/', close: true, connections: 64 },
  { id: 'c', title: 'keep-alive, 64 KiB responses, 64 connections', path: '/64k', close: false, connections: 64 },
];


/** The ratios reported for each scenario: [name, numerator, denominator, figure]. */
const RATIOS: Ratio[] = [
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
  const meshd = await startMeshd(dir, { http: p.mh, tcp: p.mt, admin: p.ma }, backendPorts);
  const haproxy = await startHaproxy(dir, { http: p.hh, tcp: p.ht }, backendPorts);
  const nginx = await startNginx(dir, p.ng, backendPorts);
  const engines = await startEngines(backendPorts);

  const main: Target[] = [
    { label: 'direct', port: backendPorts[0]! },
    { label: 'meshd http', port: p.mh, proc: meshd },
    { label: 'haproxy http', port: p.hh, proc: haproxy },
    { label: 'nginx', port: p.ng, proc: nginx },
    { label: 'meshd tcp', port: p.mt, proc: meshd },
    { label: 'haproxy tcp', port: p.ht, proc: haproxy },
  ];
  const withEngines = [...main, ...engines];
  for (const t of withEngines) await runLoad({ url: `http://127.0.0.1:${t.port}/`, connections: 64, duration: 1 }); // warm-up
  log(`warm-up done; ${opt.rounds} rounds of ${opt.duration} s per target and scenario`);

  const scenarios: Record<string, ScenarioResult> = {};
  for (const s of SCENARIOS) scenarios[s.id] = await measure({
    id: s.id, title: s.title, connections: s.connections, rounds: opt.rounds, ratios: RATIOS,
    load: (t) => runLoad({ url: `http://127.0.0.1:${t.port}${s.path}`, connections: s.connections, duration: opt.duration, close: s.close }),
  }, s.id === 'a' ? withEngines : main);

  const peakRssKiB: Record<string, number> = {
    meshd: familyKiB(meshd.pid, 'VmHWM'), haproxy: familyKiB(haproxy.pid, 'VmHWM'), 'nginx (master + workers)': familyKiB(nginx.pid, 'VmHWM'),
  };
  for (const proc of [meshd, haproxy, nginx, ...engines.map((e) => e.proc)]) killTree(proc.child);

  const report: Report = {
    date: new Date().toISOString(),
    machine: machine(),
    options: { rounds: opt.rounds, durationSeconds: opt.duration },
    scenarios,
    peakRssKiB,
  };
  const a = scenarios.a!.cells;
  report.engines = Object.fromEntries(['meshd http', ...Object.values(ENGINES)].map((label) => [label, {
    rps: a[label]!.rps, p99: a[label]!.p99, cpuUsPerReq: a[label]!.cpuUsPerReq, vsMeshd: round(a[label]!.rps / a['meshd http']!.rps, 2),
  }]));
  report.idle = await idlePhase(dir, backendPorts);
  report.tableUpdate = await measureTableUpdates(dir, backendPorts, 64);
  log(`table updates ${JSON.stringify(report.tableUpdate)}`);
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

  fs.mkdirSync(path.join(bench, 'results'), { recursive: true });
  fs.writeFileSync(path.join(bench, 'results/latest.json'), JSON.stringify(report, null, 2) + '\n');
  log(`\nwrote ${path.join(bench, 'results/latest.json')}`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
  killAll();
  process.exit(1);
});
