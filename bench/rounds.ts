// What the suites share around their load runs: interleaved rounds over the
// targets with the proxy's CPU and memory sampled per run, medians and
// per-round ratios, and where the sources and the machine are.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HERE, median, round } from './harness.js';
import type { LoadResult } from './load.js';
import { familyCpu, RssSampler } from './proc.js';
import { toolVersions, type Running } from './proxies.js';
import type { Cell, Report, ScenarioResult } from './report.js';

/** What the load generator is pointed at; `proc` is whose CPU and memory are sampled (none for direct). */
export interface Target { label: string; port: number; proc?: Running }

/** A ratio reported per scenario: [name, numerator, denominator, figure]. */
export type Ratio = [string, string, string, 'rps' | 'p99' | 'cpuUsPerReq'];

export interface RoundsSpec {
  id: string;
  title: string;
  connections: number;
  rounds: number;
  /** One run against one target; resolves with what the load generator counted. */
  load: (t: Target) => Promise<LoadResult>;
  ratios: Ratio[];
  /** Reverse the targets' order every other round (A B, B A, …), so a drift over the run falls on each alike. */
  alternate?: boolean;
}

export const log = (line: string) => process.stderr.write(line + '\n');

/** The source bench/ dir (results, baseline): npm runs from the project root; else beside the default build. */
export function sourceDir(): string {
  for (const d of [path.resolve(process.cwd(), 'bench'), path.resolve(HERE, '../../bench')]) {
    if (fs.existsSync(path.join(d, 'run.ts'))) return d;
  }
  throw new Error('cannot find the bench/ sources: run from the project root');
}

export function machine(): Report['machine'] {
  const cpu = /^model name\s*:\s*(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? os.cpus()[0]?.model ?? 'unknown';
  return { nproc: os.cpus().length, cpu, node: process.version, kernel: os.release(), ...toolVersions() };
}

/** Interleaved rounds of one scenario over the targets. */
export async function measure(s: RoundsSpec, targets: Target[]): Promise<ScenarioResult> {
  const runs = new Map<string, { rps: number; p50: number; p99: number; errors: number; non2xx: number; cpu: number | null; rss: number | null }[]>();
  for (let n = 1; n <= s.rounds; n++) {
    for (const t of s.alternate && n % 2 === 0 ? [...targets].reverse() : targets) {
      const cpuBefore = t.proc ? familyCpu(t.proc.pid) : 0;
      const rss = t.proc ? new RssSampler(t.proc.pid) : undefined;
      const r = await s.load(t);
      const peak = rss?.stop() ?? null;
      const cpu = t.proc && r.requests ? (familyCpu(t.proc.pid) - cpuBefore) / r.requests : null;
      runs.set(t.label, [...(runs.get(t.label) ?? []), { ...r, cpu, rss: peak }]);
      log(`(${s.id}) round ${n}/${s.rounds} ${t.label.padEnd(32)} ${String(r.rps).padStart(6)} req/s  p99 ${r.p99} ms  ${cpu === null ? '' : `${round(cpu, 1)} µs/req`}${r.errors + r.non2xx ? `  errors ${r.errors} non-2xx ${r.non2xx}` : ''}`);
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
  const perRound: Record<string, number[]> = {};
  for (const [name, a, b, figure] of s.ratios) {
    const ra = cells[a]?.rounds;
    const rb = cells[b]?.rounds;
    if (!ra || !rb) continue;
    const per = ra.map((x, i) => (x[figure] ?? NaN) / (rb[i]![figure] ?? NaN)).filter(Number.isFinite);
    if (per.length) {
      ratios[name] = round(median(per), 2);
      perRound[name] = per.map((x) => round(x, 2));
    }
  }
  return { title: s.title, connections: s.connections, cells, ratios, perRound };
}
