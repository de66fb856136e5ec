// The suite's result (written as bench/results/latest.json) and its markdown rendering.
import type { IdleResult } from './idle.js';
import type { TableUpdateResult } from './table-update.js';

/** One target in one scenario: medians over the rounds, plus each round's figures. */
export interface Cell {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
  /** Proxy process(es) user+system CPU over the run ÷ requests served (no figure for direct). */
  cpuUsPerReq: number | null;
  /** Highest VmRSS of the proxy process(es) sampled during this scenario's runs. */
  peakRssKiB: number | null;
  rounds: { rps: number; p99: number; cpuUsPerReq: number | null }[];
}

export interface ScenarioResult {
  title: string;
  connections: number;
  cells: Record<string, Cell>;
  /** Median over rounds of the per-round ratio (both runs of a round are seconds apart). */
  ratios: Record<string, number>;
  /** Each round's ratio, in round order. */
  perRound?: Record<string, number[]>;
}

export interface Report {
  date: string;
  machine: { nproc: number; cpu: string; node: string; kernel: string; haproxy: string; nginx: string };
  options: { rounds: number; durationSeconds: number };
  scenarios: Record<string, ScenarioResult>;
  /** VmHWM at the end of the load phase: meshd one process; haproxy one process (threads); nginx master + workers summed. */
  peakRssKiB: Record<string, number>;
  engines?: Record<string, { rps: number; p99: number; cpuUsPerReq: number | null; vsMeshd: number }>;
  idle?: Record<string, IdleResult>;
  tableUpdate?: TableUpdateResult;
}

const mib = (kib: number | null) => (kib === null ? '' : (kib / 1024).toFixed(1));
const num = (x: number | null) => (x === null || Number.isNaN(x) ? '' : String(x));

export function markdown(r: Report): string {
  const out: string[] = [];
  const m = r.machine;
  out.push(`Machine: ${m.nproc} cores (${m.cpu}), Linux ${m.kernel}, Node ${m.node}, ${m.haproxy}, ${m.nginx}; ${r.options.rounds} interleaved rounds of ${r.options.durationSeconds} s, medians.`);

  for (const [id, s] of Object.entries(r.scenarios)) {
    out.push('', `### (${id}) ${s.title}`, '', '| target | req/s | p50 ms | p99 ms | errors / non-2xx | CPU µs/req | peak RSS MiB |', '|---|---:|---:|---:|---:|---:|---:|');
    for (const [label, c] of Object.entries(s.cells)) {
      out.push(`| ${label} | ${c.rps} | ${c.p50} | ${c.p99} | ${c.errors} / ${c.non2xx} | ${num(c.cpuUsPerReq)} | ${mib(c.peakRssKiB)} |`);
    }
  }

  const ids = Object.keys(r.scenarios);
  const names = [...new Set(ids.flatMap((id) => Object.keys(r.scenarios[id]!.ratios)))];
  out.push('', '### Ratios (median of per-round ratios)', '', `| ratio | ${ids.map((id) => `(${id})`).join(' | ')} |`, `|---|${ids.map(() => '---:').join('|')}|`);
  for (const n of names) out.push(`| ${n} | ${ids.map((id) => num(r.scenarios[id]!.ratios[n] ?? null)).join(' | ')} |`);

  out.push('', '### Peak RSS over the load phase (VmHWM)', '', '| process | MiB |', '|---|---:|');
  for (const [k, v] of Object.entries(r.peakRssKiB)) out.push(`| ${k} | ${mib(v)} |`);

  if (r.engines) {
    out.push('', '### L7 engines (scenario a, same rounds)', '', '| forwarder | req/s | p99 ms | CPU µs/req | req/s ÷ meshd http |', '|---|---:|---:|---:|---:|');
    for (const [k, e] of Object.entries(r.engines)) out.push(`| ${k} | ${e.rps} | ${e.p99} | ${num(e.cpuUsPerReq)} | ${e.vsMeshd} |`);
  }

  if (r.idle) {
    out.push('', '### 1,000 idle connections (fresh processes)', '', '| target | open | RSS before MiB | RSS after MiB | KiB per connection |', '|---|---:|---:|---:|---:|');
    for (const [k, i] of Object.entries(r.idle)) out.push(`| ${k} | ${i.connections}${i.failed ? ` (${i.failed} failed)` : ''} | ${mib(i.rssBeforeKiB)} | ${mib(i.rssAfterKiB)} | ${i.kibPerConnection} |`);
  }

  const t = r.tableUpdate;
  if (t) {
    const sp = (s: { median: number; min: number; max: number }) => `${s.median} (${s.min}–${s.max})`;
    out.push('', `### Table updates (meshd, ${t.backends} backends in one route)`, '', '| | ms, median (min–max) |', '|---|---:|');
    out.push(`| in-process: read + parse + compile the file | ${t.inProcess.readCompileMs} |`);
    out.push(`| in-process: apply to the live table | ${t.inProcess.applyMs} |`);
    out.push(`| backend added: file rewritten → new version on the admin API | ${sp(t.addToVersionMs)} |`);
    out.push(`| backend added: file rewritten → first request on it | ${sp(t.addToTrafficMs)} |`);
    out.push(`| backend removed: file rewritten → new version | ${sp(t.removeToVersionMs)} |`);
    out.push(`| backend removed: file rewritten → requests no longer reach it | ${sp(t.removeToTrafficMs)} |`);
    const q = t.rapid;
    out.push('', `${t.cycles} add/remove cycles. The file provider polls every ${t.filePollMs} ms: a change waits 0–${t.filePollMs} ms (${t.filePollMs / 2} on average) to be noticed; the rest is processing.`);
    out.push('', `${q.written} updates (one every 300 ms) under load: ${q.applied} applied, ${q.requests} requests (${q.rps} req/s), ${q.errors} errors, ${q.non2xx} non-2xx; meshd retried ${q.meshdRetries}${Object.keys(q.meshdAnswered).length ? `, answered itself ${JSON.stringify(q.meshdAnswered)}` : ''}.`);
  }
  return out.join('\n') + '\n';
}
