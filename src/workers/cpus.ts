// How many CPUs meshd may use: the process's CPU affinity (taskset, cpuset),
// capped by a cgroup v2 CPU quota (docker --cpus, a swarm service's limit),
// which leaves affinity alone.
import fs from 'node:fs';
import os from 'node:os';

/** `quota period` from cpu.max; undefined when unlimited or unreadable. */
export function quotaCpus(cpuMax: string): number | undefined {
  const [quota, period] = cpuMax.trim().split(/\s+/);
  const q = Number(quota);
  const p = Number(period);
  if (!(q > 0) || !(p > 0)) return undefined;
  return Math.max(1, Math.ceil(q / p));
}

export function autoWorkers(cpuMaxFile = '/sys/fs/cgroup/cpu.max'): number {
  const affinity = os.availableParallelism();
  let quota: number | undefined;
  try {
    quota = quotaCpus(fs.readFileSync(cpuMaxFile, 'utf8'));
  } catch {
    // No cgroup v2 file: no quota to honour.
  }
  return Math.min(affinity, quota ?? affinity);
}
