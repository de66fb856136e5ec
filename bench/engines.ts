// The L7 engine comparison that chose meshd's forwarding engine: bare forwarders
// on node's http server with (i) http-proxy and (ii) undici's Pool.dispatch
// (legacy handler API), each in its own process (bench/engine-servers.ts). They
// join the keep-alive 100 B scenario as extra targets, so they are measured in
// the same interleaved rounds, against the same backends, as meshd L7 itself.
import { fork } from 'node:child_process';
import path from 'node:path';
import { HERE, freePort, ready, track } from './harness.js';
import type { Running } from './proxies.js';

export const ENGINES = {
  'http-proxy': 'node http + http-proxy',
  undici: 'node http + undici Pool.dispatch',
} as const;

export interface EngineTarget {
  label: string;
  port: number;
  proc: Running;
}

export async function startEngines(backends: number[]): Promise<EngineTarget[]> {
  const out: EngineTarget[] = [];
  for (const [engine, label] of Object.entries(ENGINES)) {
    const port = await freePort();
    const child = track(fork(path.join(HERE, 'engine-servers.js'), [engine, String(port), ...backends.map(String)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }));
    await ready(child);
    out.push({ label, port, proc: { name: engine, pid: child.pid!, child } });
  }
  return out;
}
