// What a process costs, read from /proc: CPU time and peak or current memory.
import fs from 'node:fs';

const TICK_US = 10_000; // USER_HZ is 100 on Linux

/** User + system CPU time of a process, in microseconds. */
export function cpuMicros(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * TICK_US;
}

/** A /proc/PID/status memory field (VmRSS, VmHWM) in KiB. */
export function memoryKiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

/** Sum over a process and its children (nginx and haproxy may fork workers). */
export function family(pid: number): number[] {
  const out = [pid];
  try {
    for (const child of fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) out.push(...family(Number(child)));
  } catch { /* gone */ }
  return out;
}
