// `node dist/bench/workers.js`: meshd's --workers beside HAProxy's threads,
// with wrk, in front of one nginx worker answering 100 bytes itself.
//   equal CPU: meshd --workers 1 and HAProxy nbthread 1, each pinned to core 0;
//     wrk and nginx pinned to core 1;
//   whole machine: meshd --workers auto and HAProxy's default threads (one per
//     core), nothing pinned; then meshd --workers 1 the same way, for what the
//     workers add.
// Scenarios: keep-alive, and a new connection per request (Connection: close),
// each through an L7 (http) and an L4 (tcp) route. Rounds are interleaved and
// the order of the two proxies swapped every other round.
//   --rounds N (3)  --duration S (5)  --connections N (64)
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, killAll, killTree, median, round, sleep, track } from './harness.js';
import { familyCpu } from './proc.js';
import { ensureTools, startHaproxy, startMeshd, startNginxOrigin, type Running } from './proxies.js';

const PROXY_CPU = 0;
const CLIENT_CPU = 1;

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
  errors: number;
  cpuUsPerReq: number;
}

/** wrk for `seconds`, pinned to `cpu` if given; the proxy's CPU read from /proc around it. */
function wrk(port: number, close: boolean, seconds: number, connections: number, proxy: Running, cpu?: number): Promise<Run> {
  const args = ['-t', '2', '-c', String(connections), '-d', `${seconds}s`, ...(close ? ['-H', 'Connection: close'] : []), `http://127.0.0.1:${port}/`];
  const [cmd, argv] = cpu === undefined ? ['wrk', args] : ['taskset', ['-c', String(cpu), 'wrk', ...args]];
  const cpuBefore = familyCpu(proxy.pid);
  return new Promise((resolve, reject) => {
    const child = track(spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'] }));
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.once('exit', (code) => {
      const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
      const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
      if (code !== 0 || !Number.isFinite(rps)) return reject(new Error(`wrk failed (${code}): ${out}`));
      const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
      const errors = (socketErrors ? socketErrors.slice(1).reduce((n, x) => n + Number(x), 0) : 0) + Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
      resolve({ rps: Math.round(rps), errors, cpuUsPerReq: round((familyCpu(proxy.pid) - cpuBefore) / requests, 1) });
    });
  });
}

interface Setup {
  name: string;
  meshdWorkers: string;
  haproxyThreads: number | undefined;
  pinned: boolean;
}

const SETUPS: Setup[] = [
  { name: 'equal CPU (core 0 each): meshd --workers 1, HAProxy nbthread 1', meshdWorkers: '1', haproxyThreads: 1, pinned: true },
  { name: `whole machine (${os.availableParallelism()} CPUs): meshd --workers auto, HAProxy default threads`, meshdWorkers: 'auto', haproxyThreads: undefined, pinned: false },
  { name: 'whole machine, meshd in one process: meshd --workers 1, HAProxy default threads', meshdWorkers: '1', haproxyThreads: undefined, pinned: false },
];

const SCENARIOS = [
  { name: 'L7 keep-alive', mode: 'http', close: false },
  { name: 'L7 new connection per request', mode: 'http', close: true },
  { name: 'L4 keep-alive', mode: 'tcp', close: false },
  { name: 'L4 new connection per request', mode: 'tcp', close: true },
] as const;

async function main(): Promise<void> {
  const rounds = flag('rounds', 3);
  const seconds = flag('duration', 5);
  const connections = flag('connections', 64);
  ensureTools();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshd-bench-workers-'));
  const lines = [`${new Date().toISOString()}, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} at the start; ${rounds} rounds of ${seconds} s, ${connections} connections, wrk -t 2`, ''];
  for (const setup of SETUPS) {
    const cpu = (c: number) => (setup.pinned ? c : undefined);
    const origin = await freePort();
    const backend = await startNginxOrigin(dir, origin, 'x'.repeat(100), cpu(CLIENT_CPU));
    const ports = { http: await freePort(), tcp: await freePort() };
    const meshd = await startMeshd(dir, { ...ports, admin: await freePort() }, [origin], setup.meshdWorkers, cpu(PROXY_CPU));
    const hports = { http: await freePort(), tcp: await freePort() };
    const haproxy = await startHaproxy(dir, hports, [origin], { threads: setup.haproxyThreads, cpu: cpu(PROXY_CPU) });
    // Let meshd's first probes pass.
    await sleep(1500);
    lines.push(`### ${setup.name}`, '', '| scenario | meshd req/s | HAProxy req/s | meshd ÷ HAProxy | meshd CPU µs/req | HAProxy CPU µs/req | errors (meshd/HAProxy) |', '|---|---|---|---|---|---|---|');
    for (const s of SCENARIOS) {
      const targets = [{ proc: meshd, port: ports[s.mode] }, { proc: haproxy, port: hports[s.mode] }];
      await Promise.all(targets.map((t) => wrk(t.port, s.close, 1, connections, t.proc, cpu(CLIENT_CPU))));
      const runs: Run[][] = [[], []];
      const ratios: number[] = [];
      for (let r = 0; r < rounds; r++) {
        const order = r % 2 === 0 ? [0, 1] : [1, 0];
        for (const i of order) runs[i]!.push(await wrk(targets[i]!.port, s.close, seconds, connections, targets[i]!.proc, cpu(CLIENT_CPU)));
        ratios.push(runs[0]![r]!.rps / runs[1]![r]!.rps);
      }
      const med = (i: number, k: 'rps' | 'cpuUsPerReq') => median(runs[i]!.map((x) => x[k]));
      const errors = runs.map((rs) => rs.reduce((n, x) => n + x.errors, 0)).join('/');
      lines.push(`| ${s.name} | ${med(0, 'rps')} | ${med(1, 'rps')} | ${round(median(ratios), 2)} | ${med(0, 'cpuUsPerReq')} | ${med(1, 'cpuUsPerReq')} | ${errors} |`);
      process.stderr.write(`${setup.name}: ${lines.at(-1)}\n`);
    }
    lines.push('');
    for (const p of [meshd, haproxy, backend]) killTree(p.child);
  }
  process.stdout.write(lines.join('\n') + '\n');
}

main().then(() => {
  killAll();
  process.exit(0);
}, (err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  killAll();
  process.exit(1);
});
