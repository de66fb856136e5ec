// Table-update cost with 1,000 backends: meshd's own apply time (in-process),
// the time from a routes-file change to the first request routed accordingly
// (through a real meshd), and requests lost across 100 rapid updates under load.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { routesFromDocument } from '../src/discovery/file.js';
import type { RoutingTable } from '../src/table/spec.js';
import { Table } from '../src/table/table.js';
import { MESHD_MAIN, track, waitPort } from './proxies.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const DUMMIES = 999;
const defaults = { health: { interval: 1000, timeout: 500, rise: 2, fall: 1 } };

function routesYaml(port: number, backends: string[]): string {
  return `routes:\n  - name: big\n    publish: ${port}\n    mode: http\n    health: { interval: 1s, timeout: 500ms, fall: 1 }\n    backends:\n${backends.map((b) => `      - "${b}"`).join('\n')}\n`;
}

function write(file: string, text: string): void {
  fs.writeFileSync(`${file}.tmp`, text);
  fs.renameSync(`${file}.tmp`, file);
}

/** Which backend answered (x-backend header), or the status when meshd answered itself. */
function ask(port: number): Promise<string> {
  return new Promise((resolve) => {
    http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200 ? String(res.headers['x-backend']) : `status ${res.statusCode}`));
    }).on('error', (e) => resolve((e as NodeJS.ErrnoException).code ?? 'error'));
  });
}

async function adminVersion(port: number): Promise<{ version: number; eligible: number }> {
  const body = await new Promise<string>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/api/routes' }, (res) => {
      let t = '';
      res.on('data', (c) => (t += c));
      res.on('end', () => resolve(t));
    }).on('error', reject);
  });
  const j = JSON.parse(body) as { version: number; routes: { eligible: number }[] };
  return { version: j.version, eligible: j.routes[0]?.eligible ?? 0 };
}

async function until<T>(f: () => Promise<T | undefined>, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const v = await f();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error('timed out');
}

/** In-process: compile + apply of a 1,000-backend table where one backend changes. */
function applyCost(): { applyMicros: number } {
  const t = new Table({ drainTimeout: 1000 });
  const dummies = Array.from({ length: DUMMIES }, (_, i) => `127.0.0.2:${20000 + i}`);
  const doc = (extra: boolean) => ({ routes: [{ name: 'big', publish: 1, mode: 'http', backends: [...dummies, ...(extra ? ['127.0.0.1:1'] : [])] }] });
  const tables: RoutingTable[] = [routesFromDocument(doc(false), defaults), routesFromDocument(doc(true), defaults)];
  t.apply(tables[0]!);
  const n = 100;
  const start = process.hrtime.bigint();
  for (let i = 1; i <= n; i++) t.apply(tables[i % 2]!);
  return { applyMicros: Math.round(Number(process.hrtime.bigint() - start) / 1000 / n) };
}

export async function measureTableUpdates(dir: string, backends: [number, number]) {
  const inProcess = applyCost();
  const [port, admin] = [18150, 18151];
  const file = path.join(dir, 'big-routes.yml');
  const dummies = Array.from({ length: DUMMIES }, (_, i) => `127.0.0.2:${20000 + i}`);
  const one = [...dummies, `127.0.0.1:${backends[0]}`];
  const two = [...one, `127.0.0.1:${backends[1]}`];
  write(file, routesYaml(port, one));
  const meshd = track(spawn(process.execPath, [MESHD_MAIN, '--provider', 'file', '--routes', file, '--listen-host', '127.0.0.1', '--admin-addr', `127.0.0.1:${admin}`, '--log-level', 'error'], { stdio: 'ignore' }));
  try {
    await waitPort(port);
    await waitPort(admin);
    // Wait until probes have taken the 999 closed ports out.
    await until(async () => ((await adminVersion(admin)).eligible === 1 ? true : undefined), 30_000);

    const v0 = (await adminVersion(admin)).version;
    const t0 = Date.now();
    write(file, routesYaml(port, two));
    await until(async () => ((await adminVersion(admin)).version > v0 ? true : undefined), 5000);
    const addVersionMs = Date.now() - t0;
    await until(async () => ((await ask(port)) === String(backends[1]) ? true : undefined), 5000);
    const addTrafficMs = Date.now() - t0;

    const t1 = Date.now();
    write(file, routesYaml(port, one));
    await until(async () => {
      const answers = await Promise.all(Array.from({ length: 4 }, () => ask(port)));
      return answers.every((a) => a === String(backends[0])) ? true : undefined;
    }, 5000);
    const removeTrafficMs = Date.now() - t1;

    // 100 updates, one every 300 ms (the file provider looks every 250 ms), under load.
    const vBefore = (await adminVersion(admin)).version;
    const duration = 32;
    const loadOut = new Promise<string>((resolve, reject) => {
      const child = track(spawn(process.execPath, [path.join(HERE, 'load.js'), JSON.stringify({ url: `http://127.0.0.1:${port}/`, connections: 16, duration })], { stdio: ['ignore', 'pipe', 'inherit'] }));
      let out = '';
      child.stdout!.on('data', (c) => (out += c));
      child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`load exited ${code}`))));
    });
    await new Promise((r) => setTimeout(r, 500));
    for (let i = 0; i < 100; i++) {
      write(file, routesYaml(port, i % 2 === 0 ? two : one));
      await new Promise((r) => setTimeout(r, 300));
    }
    const load = JSON.parse(await loadOut) as { requests: number; errors: number; non2xx: number };
    const applied = (await adminVersion(admin)).version - vBefore;
    return {
      ...inProcess,
      fileChangeToNewVersionMs: addVersionMs,
      fileChangeToTrafficOnAddedBackendMs: addTrafficMs,
      fileChangeToNoTrafficOnRemovedBackendMs: removeTrafficMs,
      note: 'the file provider polls the routes file every 250 ms; the rest is read + parse + compile + apply',
      rapidUpdates: { written: 100, applied, requests: load.requests, errors: load.errors, non2xx: load.non2xx },
    };
  } finally {
    meshd.kill('SIGKILL');
  }
}

