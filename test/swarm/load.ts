// A bounded load generator for the swarm tests: a fixed request rate for a
// fixed time, against a lab node's address only, recording every outcome.
import http from 'node:http';

export interface LoadResult {
  sent: number;
  ok: number;
  /** Each failed request: its status, or the error code. */
  failures: string[];
  /** Which task answered, from the whoami body. */
  tasks: Map<string, number>;
}

export async function runLoad(opts: { host: string; port: number; hostHeader?: string; rate: number; durationMs: number }): Promise<LoadResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const result: LoadResult = { sent: 0, ok: 0, failures: [], tasks: new Map() };
  const total = Math.round((opts.rate * opts.durationMs) / 1000);
  const pending: Promise<void>[] = [];
  const one = () => new Promise<void>((resolve) => {
    const req = http.get({ host: opts.host, port: opts.port, path: '/', agent, headers: opts.hostHeader ? { host: opts.hostHeader } : {} }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => {
        if (res.statusCode === 200) {
          result.ok++;
          const task = (JSON.parse(body) as { task: string }).task;
          result.tasks.set(task, (result.tasks.get(task) ?? 0) + 1);
        } else result.failures.push(`status ${res.statusCode}: ${body.trim()}`);
        resolve();
      });
      res.on('error', (err: NodeJS.ErrnoException) => { result.failures.push(err.code ?? err.message); resolve(); });
    });
    req.setTimeout(5000, () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', (err: NodeJS.ErrnoException) => { result.failures.push(err.code ?? err.message); resolve(); });
  });
  const start = Date.now();
  while (result.sent < total) {
    const due = start + (result.sent * 1000) / opts.rate;
    const wait = due - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    result.sent++;
    pending.push(one());
  }
  await Promise.all(pending);
  agent.destroy();
  return result;
}
