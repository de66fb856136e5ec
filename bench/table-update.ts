// Table-update cost with 1,000 backends (meshd only). One route holds backend A
// plus 999 backends on closed loopback ports (probed down within a second), and
// backend B is added or removed by rewriting the routes file:
//  - in-process: read + YAML parse + compile, and apply, of that file, which is what
//    meshd does once it notices the change;
//  - through a real meshd: file rewritten → new version on the admin API, and →
//    first request routed accordingly, over several add/remove cycles;
//  - 100 updates, one every 300 ms, while autocannon runs: errors and non-2xx.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { routesFromDocument } from '../src/discovery/file.js';
import { Table } from '../src/table/table.js';
import { freePort, killTree, median, round, runLoad, sleep } from './harness.js';
import { spawnMeshd } from './proxies.js';

const DUMMIES = 999;
/** meshd's file provider checks the routes file's status this often (src/discovery/file.ts). */
const FILE_POLL_MS = 250;
const CYCLES = 5;
const UPDATES = 100;
const UPDATE_EVERY_MS = 300;

// Closed ports on 127.0.0.2: nothing of ours listens there (all listeners bind 127.0.0.1).
const dummies = Array.from({ length: DUMMIES }, (_, i) => `127.0.0.2:${18000 + i}`);
const defaults = { health: { interval: 1000, timeout: 500, rise: 2, fall: 1 } };

function routesYaml(port: number, backends: string[]): string {
  return `routes:\n  - name: big\n    publish: ${port}\n    mode: http\n    health: { interval: 1s, timeout: 500ms, fall: 1 }\n    backends:\n${backends.map((b) => `      - "${b}"`).join('\n')}\n`;
}

/** Atomic rewrite, as an editor or a config tool would do it. */
function write(file: string, text: string): void {
  fs.writeFileSync(`${file}.tmp`, text);
  fs.renameSync(`${file}.tmp`, file);
}

function get(port: number, urlPath: string): Promise<{ status: number; backend: string; body: string }> {
  return new Promise((resolve) => {
    http.get({ host: '127.0.0.1', port, path: urlPath, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, backend: String(res.headers['x-backend'] ?? ''), body }));
    }).on('error', (e: NodeJS.ErrnoException) => resolve({ status: 0, backend: e.code ?? 'error', body: '' }));
  });
}

/** The table version; /readyz reports the same `table.version` as /api/routes at a fraction of the cost (no 1,000-backend listing). */
async function version(admin: number): Promise<number> {
  return (JSON.parse((await get(admin, '/readyz')).body) as { tableVersion: number }).tableVersion;
}

async function eligible(admin: number): Promise<number> {
  const j = JSON.parse((await get(admin, '/api/routes')).body) as { routes: { eligible: number }[] };
  return j.routes[0]?.eligible ?? 0;
}

/** Polls `f` every `every` ms until it returns true; the elapsed ms since `t0`. */
async function until(f: () => Promise<boolean>, t0: number, ms = 5000, every = 2): Promise<number> {
  while (Date.now() - t0 < ms) {
    if (await f()) return Date.now() - t0;
    await sleep(every);
  }
  throw new Error(`condition not met within ${ms} ms`);
}

/** Sums of meshd's own counters of requests it answered itself or retried, from /metrics. */
async function meshdCounters(admin: number): Promise<{ retries: number; answered: Record<string, number> }> {
  const text = (await get(admin, '/metrics')).body;
  const retries = Number(/^meshd_proxy_retries_total (\d+)/m.exec(text)?.[1] ?? 0);
  const answered: Record<string, number> = {};
  for (const m of text.matchAll(/^meshd_proxy_answered_total\{code="([A-Z_]+)"\} (\d+)/gm)) answered[m[1]!] = Number(m[2]);
  return { retries, answered };
}

/** In-process: what meshd does with the 1,000-backend file once it sees it changed. */
function processingCost(dir: string): { readCompileMs: number; applyMs: number } {
  const files = [[...dummies, '127.0.0.1:1'], [...dummies, '127.0.0.1:1', '127.0.0.1:2']].map((list, i) => {
    const f = path.join(dir, `cost-${i}.yml`);
    fs.writeFileSync(f, routesYaml(1, list));
    return f;
  });
  const table = new Table({ drainTimeout: 1000 });
  const parse: number[] = [];
  const apply: number[] = [];
  for (let i = 0; i < 40; i++) {
    const t0 = process.hrtime.bigint();
    const compiled = routesFromDocument(parseYaml(fs.readFileSync(files[i % 2]!, 'utf8')), defaults);
    const t1 = process.hrtime.bigint();
    table.apply(compiled);
    const t2 = process.hrtime.bigint();
    if (i >= 10) { // the first ones warm up the JIT
      parse.push(Number(t1 - t0) / 1e6);
      apply.push(Number(t2 - t1) / 1e6);
    }
  }
  table.close();
  return { readCompileMs: round(median(parse), 2), applyMs: round(median(apply), 2) };
}

interface Spread { median: number; min: number; max: number }
const spread = (xs: number[]): Spread => ({ median: round(median(xs)), min: Math.min(...xs), max: Math.max(...xs) });

export interface TableUpdateResult {
  backends: number;
  inProcess: { readCompileMs: number; applyMs: number };
  cycles: number;
  addToVersionMs: Spread;
  addToTrafficMs: Spread;
  removeToVersionMs: Spread;
  removeToTrafficMs: Spread;
  filePollMs: number;
  rapid: { written: number; applied: number; requests: number; errors: number; non2xx: number; rps: number; meshdRetries: number; meshdAnswered: Record<string, number> };
}

export async function measureTableUpdates(dir: string, backends: number[], connections: number): Promise<TableUpdateResult> {
  const [port, admin] = [await freePort(), await freePort()];
  const [a, b] = backends.map((p) => `127.0.0.1:${p}`) as [string, string];
  const one = [...dummies, a];
  const two = [...one, b];
  const sub = fs.mkdtempSync(path.join(dir, 'table-'));
  const inProcess = processingCost(sub);
  const file = path.join(sub, 'routes.yml');
  write(file, routesYaml(port, one));
  const meshd = await spawnMeshd(file, admin, [port], 'error');
  try {
    // New backends start eligible; wait until the probes have taken the 999 closed ports out.
    await until(async () => (await eligible(admin)) === 1, Date.now(), 15_000, 200);

    const add = { version: [] as number[], traffic: [] as number[] };
    const remove = { version: [] as number[], traffic: [] as number[] };
    for (let i = 0; i < CYCLES; i++) {
      let v = await version(admin);
      let t0 = Date.now();
      write(file, routesYaml(port, two));
      add.version.push(await until(async () => (await version(admin)) > v, t0));
      // Traffic follows when a request reaches B, the added backend.
      add.traffic.push(await until(async () => (await get(port, '/')).backend === String(backends[1]), t0));

      await sleep(100 + Math.random() * FILE_POLL_MS); // start the next change at a random point of the poll cycle
      v = await version(admin);
      t0 = Date.now();
      write(file, routesYaml(port, one));
      remove.version.push(await until(async () => (await version(admin)) > v, t0));
      // Round-robin over A and B alternates, so two answers in a row from A mean B is out.
      remove.traffic.push(await until(async () => (await get(port, '/')).backend === String(backends[0]) && (await get(port, '/')).backend === String(backends[0]), t0));
      await sleep(100 + Math.random() * FILE_POLL_MS);
    }

    const vBefore = await version(admin);
    const cBefore = await meshdCounters(admin);
    const seconds = Math.ceil((UPDATES * UPDATE_EVERY_MS) / 1000) + 2;
    const load = runLoad({ url: `http://127.0.0.1:${port}/`, connections, duration: seconds });
    await sleep(1000);
    for (let i = 0; i < UPDATES; i++) {
      write(file, routesYaml(port, i % 2 === 0 ? two : one));
      await sleep(UPDATE_EVERY_MS);
    }
    const r = await load;
    const cAfter = await meshdCounters(admin);
    const answered = Object.fromEntries(Object.entries(cAfter.answered).map(([k, n]) => [k, n - (cBefore.answered[k] ?? 0)]).filter(([, n]) => n !== 0));
    return {
      backends: DUMMIES + 1,
      inProcess,
      cycles: CYCLES,
      addToVersionMs: spread(add.version),
      addToTrafficMs: spread(add.traffic),
      removeToVersionMs: spread(remove.version),
      removeToTrafficMs: spread(remove.traffic),
      filePollMs: FILE_POLL_MS,
      rapid: {
        written: UPDATES, applied: (await version(admin)) - vBefore, requests: r.requests, errors: r.errors, non2xx: r.non2xx, rps: r.rps,
        meshdRetries: cAfter.retries - cBefore.retries, meshdAnswered: answered,
      },
    };
  } finally {
    killTree(meshd.child);
  }
}
