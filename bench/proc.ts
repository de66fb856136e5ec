// What a process costs, read from /proc: CPU time and current or peak memory,
// summed over the process and its children (nginx forks workers; haproxy and
// meshd are one process each, threads included in the process's own figures).
import fs from 'node:fs';

const TICK_US = 10_000; // USER_HZ is 100 on Linux

/** The process and its descendants, parent first; [] once it is gone. */
export function family(pid: number): number[] {
  if (!fs.existsSync(`/proc/${pid}`)) return [];
  const out = [pid];
  try {
    for (const child of fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) out.push(...family(Number(child)));
  } catch {
    /* gone meanwhile */
  }
  return out;
}

/** User + system CPU time of one process, in microseconds. */
function cpuMicros(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * TICK_US;
  } catch {
    return 0;
  }
}

/** A /proc/PID/status memory field (VmRSS, VmHWM) in KiB. */
function memoryKiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

export const familyCpu = (pid: number): number => family(pid).reduce((n, p) => n + cpuMicros(p), 0);
export const familyKiB = (pid: number, field: 'VmRSS' | 'VmHWM'): number => family(pid).reduce((n, p) => n + memoryKiB(p, field), 0);

/** Highest VmRSS of a process family seen while it runs, sampled every 200 ms. */
export class RssSampler {
  peak = 0;
  readonly #timer: NodeJS.Timeout;

  constructor(readonly pid: number) {
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), 200);
  }

  #sample(): void {
    this.peak = Math.max(this.peak, familyKiB(this.pid, 'VmRSS'));
  }

  stop(): number {
    clearInterval(this.#timer);
    this.#sample();
    return this.peak;
  }
}
